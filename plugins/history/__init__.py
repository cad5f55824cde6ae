"""history: the conversation store (SQLite), offered to other plugins through `history_store`, and /clear.

A conversation is one user's private chat, or a whole group (`scope = "chat"`), or one user within
a group (`scope = "user"`). Writes run in aiosqlite's thread, so they never block the event loop;
WAL mode makes every answered turn survive a `kill -9`.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import aiosqlite
from pydantic import Field

from botcore import App, ChatMessage, Command, StrictModel, Turn, hookimpl


class Settings(StrictModel):
    """[plugins.history]"""

    path: str = "botcore-history.sqlite3"
    """The SQLite file (relative to the working directory)."""
    scope: Literal["chat", "user"] = "chat"
    """In groups: one conversation per chat, or one per user. Private chats are always per user."""
    max_messages: int = Field(200, ge=2, le=100_000)
    """Older messages of a conversation are deleted past this many."""
    max_age_days: float = Field(30, ge=0)
    """Messages older than this are forgotten (0 keeps them forever)."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conversation TEXT NOT NULL,
    created REAL NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation, id);
CREATE INDEX IF NOT EXISTS messages_by_age ON messages (created);
"""

PRUNE_AGE_EVERY = 3600.0


class SQLiteStore:
    """A HistoryStore in one SQLite file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db: aiosqlite.Connection | None = None
        self._last_age_prune = 0.0

    async def open(self) -> None:
        """Open (creating if needed) the file, in WAL mode."""
        path = await asyncio.to_thread(_prepare, self.settings.path)
        self._db = await aiosqlite.connect(path)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.executescript(SCHEMA)
        await self._db.commit()
        await self._prune_age()

    async def close(self) -> None:
        """Close the file."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the history store is not open")
        return self._db

    def conversation(self, turn: Turn) -> str:
        """The conversation key of a turn."""
        if turn.is_private or self.settings.scope == "chat":
            return f"chat:{turn.chat_id}"
        return f"chat:{turn.chat_id}:user:{turn.user_id}"

    def _oldest_kept(self) -> float:
        days = self.settings.max_age_days
        return time.time() - days * 86400 if days else 0.0

    async def load(self, turn: Turn) -> list[ChatMessage]:
        """The conversation, oldest first, within the retention limits."""
        async with self.db.execute(
            "SELECT message FROM messages WHERE conversation = ? AND created >= ? "
            "ORDER BY id DESC LIMIT ?",
            (self.conversation(turn), self._oldest_kept(), self.settings.max_messages),
        ) as cursor:
            rows = await cursor.fetchall()
        return [json.loads(row[0]) for row in reversed(list(rows))]

    async def append(self, turn: Turn, *messages: ChatMessage) -> None:
        """Add messages and commit: durable once this returns."""
        key = self.conversation(turn)
        now = time.time()
        await self.db.executemany(
            "INSERT INTO messages (conversation, created, message) VALUES (?, ?, ?)",
            [(key, now, json.dumps(m, ensure_ascii=False)) for m in messages],
        )
        await self.db.execute(
            "DELETE FROM messages WHERE conversation = ? AND id <= ("
            "SELECT id FROM messages WHERE conversation = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (key, key, self.settings.max_messages),
        )
        await self.db.commit()
        if now - self._last_age_prune > PRUNE_AGE_EVERY:
            await self._prune_age()

    async def clear(self, turn: Turn) -> None:
        """Forget the conversation."""
        await self.db.execute(
            "DELETE FROM messages WHERE conversation = ?", (self.conversation(turn),)
        )
        await self.db.commit()

    async def _prune_age(self) -> None:
        self._last_age_prune = time.time()
        if self.settings.max_age_days:
            await self.db.execute("DELETE FROM messages WHERE created < ?", (self._oldest_kept(),))
            await self.db.commit()


def _prepare(name: str) -> Path:
    """The database path, its folder created (run in a thread: file system calls block)."""
    path = Path(name).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


_stores: weakref.WeakKeyDictionary[App, SQLiteStore] = weakref.WeakKeyDictionary()


@hookimpl
def settings_model() -> type[Settings]:
    return Settings


@hookimpl
def register_texts() -> dict[str, dict[str, str]]:
    return {
        "en": {
            "history.clear": "Forget our conversation",
            "history.cleared": "Done: I have forgotten our conversation.",
        },
        "ru": {
            "history.clear": "Забыть наш разговор",
            "history.cleared": "Готово: я забыл наш разговор.",
        },
    }


@hookimpl
def register_commands(app: App) -> Sequence[Command]:
    return [Command("clear", clear, help=app.texts.translations("history.clear"))]


@hookimpl
async def startup(app: App) -> None:
    store = SQLiteStore(app.settings(Settings))
    await store.open()
    _stores[app] = store


@hookimpl
async def shutdown(app: App) -> None:
    store = _stores.pop(app, None)
    if store is not None:
        await store.close()


@hookimpl(trylast=True)
def history_store(app: App) -> SQLiteStore | None:
    return _stores.get(app)


async def clear(turn: Turn) -> str:
    """/clear: wipe the current conversation."""
    await _stores[turn.app].clear(turn)
    return turn.t("history.cleared")
