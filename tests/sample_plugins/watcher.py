"""Watches the bot from a plugin: settings changed in chat, chats that moved to a new id."""

from __future__ import annotations

from typing import Any

from botcore import App, hookimpl

SEEN: list[tuple[int, dict[str, Any]]] = []
"""(id of the app, its overrides) at every call, in order."""


@hookimpl
def settings_changed(app: App) -> None:
    SEEN.append((id(app), dict(app.overrides)))


MOVES: list[tuple[int, int]] = []
"""(old chat id, new chat id) at every chat_moved, in order."""


@hookimpl
def chat_moved(old_chat_id: int, new_chat_id: int) -> None:
    MOVES.append((old_chat_id, new_chat_id))
