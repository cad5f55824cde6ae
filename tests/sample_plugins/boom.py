"""A plugin that fails in every way it can, to prove the core isolates it."""

from __future__ import annotations

from botcore import Command, Turn, UserError, hookimpl


@hookimpl
def register_commands() -> list[Command]:
    return [
        Command("boom", boom, help="Always fails"),
        Command("oops", oops, help="Fails politely"),
        Command("weird", weird, hidden=True),
    ]


@hookimpl
async def pre_message(turn: Turn) -> None:
    if turn.text == "explode in pre":
        raise RuntimeError("pre_message blew up")


@hookimpl
def post_message(turn: Turn) -> None:
    if turn.text == "/help explode in post":
        raise RuntimeError("post_message blew up")


async def boom(turn: Turn) -> str:
    raise RuntimeError("secret internal detail")


async def oops(turn: Turn) -> str:
    raise UserError("Sorry, that did not work: try /boom instead.")


async def weird(turn: Turn) -> object:
    return 42  # not a reply: a plugin bug the core must survive
