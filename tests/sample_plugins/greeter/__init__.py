"""A plugin package that ships its texts as locales/<language>.toml instead of register_texts."""

from __future__ import annotations

from botcore import Command, Turn, hookimpl


@hookimpl
def register_commands() -> list[Command]:
    return [Command("greet", greet, help="Say hello")]


async def greet(turn: Turn) -> str:
    user = turn.message.from_user
    return turn.t("greeter.hello", name=user.first_name if user else "?")
