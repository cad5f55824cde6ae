"""A plugin that answers in pre_message and rewrites replies in post_message, all synchronously."""

from __future__ import annotations

from botcore import Command, Reply, Text, Turn, hookimpl


@hookimpl
def register_commands() -> list[Command]:
    return [Command("sync", sync_command, help="A synchronous handler")]


@hookimpl
def pre_message(turn: Turn) -> str | None:
    return "pong" if turn.text == "ping" else None


@hookimpl
def post_message(turn: Turn, reply: Reply) -> Reply | None:
    if isinstance(reply, Text) and (turn.text or "").startswith("shout"):
        return Text(reply.text.upper())
    return None


def sync_command(turn: Turn) -> str:
    return f"sync handler got {turn.args!r}"
