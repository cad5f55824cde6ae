"""history: the conversation store (SQLite), offered to other plugins through `history_store`, and /clear.

A conversation is one user's private chat, or a whole group (`scope = "chat"`), or one user within
a group (`scope = "user"`). Reads and writes run on the store's own thread, so they never block
the event loop; WAL mode makes every answered turn survive a `kill -9`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

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
T = TypeVar("T")


class SQLiteStore:
    """A HistoryStore in one SQLite file, served by one dedicated thread.

    Every operation is a single function run on that thread: one hop from the event loop, one
    transaction, and no two operations ever interleave on the connection.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="botcore-history")
        self._last_age_prune = 0.0

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def open(self) -> None:
        """Open (creating if needed) the file, in WAL mode."""
        await self._run(self._open)

    def _open(self) -> None:
        path = Path(self.settings.path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a process crash loses no commit
        db.executescript(SCHEMA)
        self._db = db
        self._prune_age()

    async def close(self) -> None:
        """Close the file and stop the thread."""
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._thread.shutdown(wait=False)

    @property
    def db(self) -> sqlite3.Connection:
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
        return await self._run(self._load, self.conversation(turn))

    def _load(self, key: str) -> list[ChatMessage]:
        rows = self.db.execute(
            "SELECT message FROM messages WHERE conversation = ? AND created >= ? "
            "ORDER BY id DESC LIMIT ?",
            (key, self._oldest_kept(), self.settings.max_messages),
        ).fetchall()
        return [json.loads(row[0]) for row in reversed(rows)]

    async def append(self, turn: Turn, *messages: ChatMessage) -> None:
        """Add messages in one transaction: durable once this returns."""
        rows = [json.dumps(m, ensure_ascii=False) for m in messages]
        await self._run(self._append, self.conversation(turn), rows)

    def _append(self, key: str, rows: list[str]) -> None:
        now = time.time()
        with self.db:  # one transaction
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO messages (conversation, created, message) VALUES (?, ?, ?)",
                [(key, now, row) for row in rows],
            )
            self.db.execute(
                "DELETE FROM messages WHERE conversation = ? AND id <= ("
                "SELECT id FROM messages WHERE conversation = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (key, key, self.settings.max_messages),
            )
        if now - self._last_age_prune > PRUNE_AGE_EVERY:
            self._prune_age()

    async def clear(self, turn: Turn) -> None:
        """Forget the conversation."""
        key = self.conversation(turn)
        await self._run(self.db.execute, "DELETE FROM messages WHERE conversation = ?", (key,))

    def _prune_age(self) -> None:
        self._last_age_prune = time.time()
        if self.settings.max_age_days:
            self.db.execute("DELETE FROM messages WHERE created < ?", (self._oldest_kept(),))


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
