"""Tools of every shape for tests/test_tools.py: sync, async, slow, failing, rich, turn-aware."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from botcore import App, Photo, Reply, Turn, UserError, hookimpl
from botcore.testing.fake_openai import TINY_PNG

usage: list[dict[str, float]] = []
"""What each turn metered, seen by post_message (non-streamed answers are complete by then)."""


@hookimpl
def register_tools(app: App) -> list[Callable[..., Any]]:
    return [add, whoami, slow, explode, refuse, picture]


@hookimpl
def post_message(turn: Turn, reply: Reply) -> None:
    usage.append(dict(turn.usage))


def add(a: int, b: int) -> int:
    """Add two whole numbers exactly.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


CALLS: list[str] = []
"""The tools that ran and record it (tests clear it)."""


async def whoami(turn: Turn) -> str:
    """The Telegram id of the user who is asking."""
    CALLS.append("whoami")
    return f"user {turn.user_id}"


async def slow(seconds: float) -> str:
    """Wait, then say so.

    Args:
        seconds: How long to wait.
    """
    await asyncio.sleep(seconds)
    return "waited"


def explode() -> str:
    """Always fails (a bug in a tool)."""
    raise RuntimeError("secret internals")


def refuse(city: str) -> str:
    """Refuses with a message meant for the model.

    Args:
        city: Any city.
    """
    raise UserError(f"no data for {city}")


async def picture(subject: str, turn: Turn) -> Photo:
    """Draw a picture and send it to the user.

    Args:
        subject: What to draw.
    """
    return Photo(TINY_PNG, caption=subject)
