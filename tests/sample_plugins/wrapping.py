"""A plugin with a pluggy new-style hook wrapper, which botcore refuses at start-up."""

from __future__ import annotations

from collections.abc import Generator

from botcore import Reply, Turn, hookimpl


@hookimpl(wrapper=True)
def pre_message(turn: Turn) -> Generator[None, Reply | None, Reply | None]:
    return (yield)
