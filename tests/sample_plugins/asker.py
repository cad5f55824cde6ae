"""Asks with inline buttons: /ask answers with a keyboard, /ask_later sends one mid-turn."""

from __future__ import annotations

from botcore import Button, Command, Text, Turn, hookimpl

PRESSES: list[tuple[int | None, str]] = []
"""(user, data) of every press that reached this plugin, in order."""


@hookimpl
def register_commands() -> list[Command]:
    return [
        Command("ask", ask, help="Ask with buttons"),
        Command("ask_later", ask_later, help="Send buttons before the answer"),
    ]


def ask(turn: Turn) -> Text:
    return Text("Delete it?", buttons=[[Button("Yes", "delete:42"), Button("No", "keep:42")]])


async def ask_later(turn: Turn) -> str:
    await turn.send(Text("Sure?", buttons=[[Button("Sure", "sure")]]))
    return "asked"


@hookimpl
def button_pressed(turn: Turn, data: str) -> str:
    PRESSES.append((turn.user_id, data))
    return f"you chose {data}"
