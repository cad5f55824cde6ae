"""A plugin whose every start-up hook is `async def`: the core awaits each once at start-up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from botcore import App, Command, Handler, StrictModel, Turn, hookimpl
from sample_plugins.notebook import MemoryStore

STORES: dict[App, MemoryStore] = {}


class Settings(StrictModel):
    greeting: str = "hello"


@hookimpl
async def settings_model() -> type[Settings]:
    await asyncio.sleep(0)  # really suspends: the hook is awaited, not merely called
    return Settings


@hookimpl
async def register_texts() -> Mapping[str, Mapping[str, str]]:
    await asyncio.sleep(0)
    return {"en": {"eager.help": "Say the greeting"}, "ru": {"eager.help": "Поздороваться"}}


@hookimpl
async def register_commands(app: App) -> Sequence[Command]:
    await asyncio.sleep(0)
    return [Command("greet", greet, help=app.translations("eager.help"))]


@hookimpl
async def register_handlers() -> Sequence[Handler]:
    await asyncio.sleep(0)
    return [Handler({"text"}, shout)]


@hookimpl
async def register_tools() -> Sequence[Callable[..., Any]]:
    await asyncio.sleep(0)
    return [clock]


@hookimpl
async def history_store(app: App) -> MemoryStore:
    await asyncio.sleep(0)
    return STORES.setdefault(app, MemoryStore())


async def greet(turn: Turn) -> str:
    return f"{turn.app.settings(Settings).greeting}, {turn.user_id}!"


async def shout(turn: Turn) -> str:
    return (turn.text or "").upper()


def clock() -> str:
    """Tell the time on the eager clock."""
    return "noon"
