"""A Store in one SQLite file, served by one dedicated thread: the embedded default.

Every operation is a single function run on that thread: one hop from the event loop, one
transaction, and no two operations ever interleave on the connection. WAL mode makes every
committed write survive a `kill -9`. The file is created on first use, so a bot that never stores
anything leaves no file behind.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

from botcore.store import ChatMessage, LocalLocks

T = TypeVar("T")
PRUNE_EVERY = 3600.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conversation TEXT NOT NULL,
    created REAL NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation, id);
CREATE INDEX IF NOT EXISTS messages_by_age ON messages (created);
CREATE TABLE IF NOT EXISTS records (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE TABLE IF NOT EXISTS counters (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value REAL NOT NULL,
    expires REAL,
    PRIMARY KEY (namespace, key)
);
"""


class SQLiteStore:
    """The Store protocol on SQLite; for one bot process (several would need PostgreSQL/Redis)."""

    shared = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="botcore-store")
        self._locks = LocalLocks()
        self._last_prune = 0.0

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, opened (and the file created) on first use; only on the store thread."""
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a process crash loses no commit
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(SCHEMA)
            self._db = db
        return self._db

    async def open(self) -> None:
        """Open an existing file now (so a broken one fails start-up); a new one waits for use."""
        if self.path.exists():
            await self._run(lambda: self.db)

    async def close(self) -> None:
        """Close the file and stop the thread."""
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._thread.shutdown(wait=False)

    async def messages(
        self, conversation: str, *, limit: int, since: float = 0.0
    ) -> list[ChatMessage]:
        """The newest `limit` messages at or after `since`, oldest first."""
        return await self._run(self._messages, conversation, limit, since)

    def _messages(self, conversation: str, limit: int, since: float) -> list[ChatMessage]:
        rows = self.db.execute(
            "SELECT message FROM messages WHERE conversation = ? AND created >= ? "
            "ORDER BY id DESC LIMIT ?",
            (conversation, since, limit),
        ).fetchall()
        return [json.loads(row[0]) for row in reversed(rows)]

    async def append(
        self, conversation: str, messages: Sequence[ChatMessage], *, keep: int
    ) -> None:
        """Add messages in one transaction, keep the newest `keep`."""
        rows = [json.dumps(m, ensure_ascii=False) for m in messages]
        await self._run(self._append, conversation, rows, keep)

    def _append(self, conversation: str, rows: list[str], keep: int) -> None:
        now = time.time()
        db = self.db
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO messages (conversation, created, message) VALUES (?, ?, ?)",
                [(conversation, now, row) for row in rows],
            )
            db.execute(
                "DELETE FROM messages WHERE conversation = ? AND id <= ("
                "SELECT id FROM messages WHERE conversation = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (conversation, conversation, keep),
            )
        if now - self._last_prune > PRUNE_EVERY:
            self._prune(now)

    def _prune(self, now: float) -> None:
        self._last_prune = now
        self.db.execute("DELETE FROM counters WHERE expires IS NOT NULL AND expires <= ?", (now,))

    async def clear(self, conversation: str) -> None:
        """Forget a conversation."""
        await self._run(self._execute, "DELETE FROM messages WHERE conversation = ?", conversation)

    async def replace(self, conversation: str, messages: Sequence[ChatMessage]) -> None:
        """Make the conversation exactly `messages`, in one transaction."""
        rows = [json.dumps(m, ensure_ascii=False) for m in messages]
        await self._run(self._replace, conversation, rows)

    def _replace(self, conversation: str, rows: list[str]) -> None:
        now = time.time()
        db = self.db
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM messages WHERE conversation = ?", (conversation,))
            db.executemany(
                "INSERT INTO messages (conversation, created, message) VALUES (?, ?, ?)",
                [(conversation, now, row) for row in rows],
            )

    async def expire(self, before: float) -> None:
        """Forget messages older than `before`."""
        await self._run(self._execute, "DELETE FROM messages WHERE created < ?", before)

    def _execute(self, sql: str, *args: Any) -> None:
        self.db.execute(sql, args)

    async def get(self, namespace: str, key: str) -> Any:
        """The value, or None."""
        return await self._run(self._get, namespace, key)

    def _get(self, namespace: str, key: str) -> Any:
        row = self.db.execute(
            "SELECT value FROM records WHERE namespace = ? AND key = ?", (namespace, key)
        ).fetchone()
        return None if row is None else json.loads(row[0])

    async def put(self, namespace: str, key: str, value: Any) -> None:
        """Set a value; None deletes it."""
        args: tuple[str, ...]
        if value is None:
            sql, args = "DELETE FROM records WHERE namespace = ? AND key = ?", (namespace, key)
        else:
            sql = (
                "INSERT INTO records (namespace, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value"
            )
            args = (namespace, key, json.dumps(value, ensure_ascii=False))
        await self._run(self._execute, sql, *args)

    async def scan(self, namespace: str) -> dict[str, Any]:
        """Every key and value in a namespace (reading a file not yet created does not create it:
        start-up reads the settings changed in chat)."""
        if self._db is None and not self.path.exists():
            return {}
        return await self._run(self._scan, namespace)

    def _scan(self, namespace: str) -> dict[str, Any]:
        rows = self.db.execute(
            "SELECT key, value FROM records WHERE namespace = ? ORDER BY key", (namespace,)
        )
        return {key: json.loads(value) for key, value in rows}

    async def add(
        self,
        namespace: str,
        key: str,
        amount: float,
        *,
        limit: float | None = None,
        ttl: float | None = None,
    ) -> float | None:
        """Add to a counter unless it would pass `limit`, in one transaction."""
        return await self._run(self._add, namespace, key, amount, limit, ttl)

    def _add(
        self, namespace: str, key: str, amount: float, limit: float | None, ttl: float | None
    ) -> float | None:
        now = time.time()
        db = self.db
        with db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT value, expires FROM counters WHERE namespace = ? AND key = ?",
                (namespace, key),
            ).fetchone()
            if row is None or (row[1] is not None and row[1] <= now):
                value, expires = 0.0, (now + ttl if ttl is not None else None)
            else:
                value, expires = row
            total = value + amount
            if limit is not None and total > limit:
                return None
            db.execute(
                "INSERT INTO counters (namespace, key, value, expires) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE "
                "SET value = excluded.value, expires = excluded.expires",
                (namespace, key, total, expires),
            )
        return float(total)

    async def totals(self, namespace: str, prefix: str = "") -> dict[str, float]:
        """Live counters whose keys start with `prefix`."""
        return await self._run(self._totals, namespace, prefix)

    def _totals(self, namespace: str, prefix: str) -> dict[str, float]:
        rows = self.db.execute(
            "SELECT key, value FROM counters WHERE namespace = ? AND substr(key, 1, ?) = ? "
            "AND (expires IS NULL OR expires > ?) ORDER BY key",
            (namespace, len(prefix), prefix, time.time()),
        )
        return {key: float(value) for key, value in rows}

    def lock(
        self, name: str, *, timeout: float = 120.0, order: int | None = None
    ) -> AbstractAsyncContextManager[None]:
        """An in-process lock (first come, first served): a SQLite store has one bot process."""
        return self._locks.hold(name)
