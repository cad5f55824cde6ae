"""A plugin with a pluggy old-style hook wrapper, which botcore refuses at start-up."""

from __future__ import annotations

from collections.abc import Generator

from botcore import hookimpl


@hookimpl(hookwrapper=True)
def turn_end() -> Generator[None, object, None]:
    yield
