"""A Store in one SQLite file: the embedded default, for one bot process.

Reads and writes run inline on the event loop: in WAL mode without an fsync at commit they take
tens of microseconds, far less than a hop to a thread, which on a busy core also waits out the
GIL's switch interval (5 ms); a burst of 200 turns spent a second on such hops (bench/). What can
take long runs on the store's own thread, on a second connection: opening, checkpoints (the
fsyncs), pruning, and any write that finds the file locked (the inline connection never waits).
WAL mode makes every committed write survive a `kill -9`. Writes asked for in the same turn of the
event loop share one transaction (group commit: a savepoint each, so one that fails alone rolls
back alone): in a burst a turn's journal, history, draft and usage writes cost one commit between
many turns, not one each, and every write is still committed when its call returns. The file is
created on first use, so a bot that never stores anything leaves no file behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import orjson

from botcore.store import (
    OLD_CONVERSATIONS,
    SCHEMA_VERSION,
    Change,
    LocalLocks,
    LocalSignals,
    check_schema,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
PRUNE_EVERY = 3600.0
CHECKPOINT_EVERY = 200
"""Writes between checkpoints, run on the thread (SQLite's own is every ~1000 pages of WAL)."""

META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
"""Facts about the file itself: its schema_version (botcore.store.SCHEMA_VERSION)."""
SCHEMA = """
CREATE TABLE IF NOT EXISTS lists (
    id INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    created REAL NOT NULL,
    item TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS lists_by_key ON lists (namespace, key, id);
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
MIGRATE_1 = f"""
BEGIN IMMEDIATE;
INSERT INTO lists (id, namespace, key, created, item)
    SELECT id, '{OLD_CONVERSATIONS}', conversation, created, message FROM messages ORDER BY id;
DROP TABLE messages;
INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
COMMIT;
"""
"""Schema 1's conversations become lists, ids (their order) and times kept, in one transaction."""


def _create_private(path: Path) -> None:
    """Create the database file 0600 (it holds conversations); SQLite gives its -wal and -shm
    files the database file's mode, so they are private too. An existing file keeps its mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:  # made by an older botcore, or by hand: say so, leave it to the owner
            log.warning("store: %s can be read by other users (mode %o): chmod 600 it", path, mode)
        return
    os.close(fd)


class SQLiteStore(LocalSignals):
    """The Store protocol on SQLite; several bot processes need PostgreSQL or Redis instead."""

    shared = False

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        self._db: sqlite3.Connection | None = None
        self._worker: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="botcore-store")
        self._locks = LocalLocks()
        self._writes = 0
        self._last_prune = 0.0
        self._background: set[asyncio.Future[Any]] = set()
        self._pending: list[_Write] = []
        """Writes waiting for the next group commit (`_commit`, called soon after the first)."""
        self._opening = asyncio.Lock()
        """Held while the connections open: concurrent first uses share one opening."""
        self._closed = False

    def _open(self) -> None:
        """On the thread: create the file and schema, then the two connections."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _create_private(self.path)
        worker = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        worker.execute("PRAGMA journal_mode=WAL")
        worker.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a process crash loses no commit
        worker.execute("PRAGMA busy_timeout=5000")
        try:  # the version first: a newer botcore's file is left exactly as it is
            worker.execute(META)
            row = worker.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            check_schema(int(row[0]) if row else SCHEMA_VERSION)
            worker.executescript(SCHEMA)
            old = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages'"
            if worker.execute(old).fetchone():  # written by schema 1 (with or without its row)
                worker.executescript(MIGRATE_1)
            worker.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        except BaseException:
            worker.close()
            raise
        # The inline connection never waits for a lock and leaves checkpoints to the thread.
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=0)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA wal_autocheckpoint=0")
        self._worker, self._db = worker, db

    async def _ready(self) -> sqlite3.Connection:
        """The inline connection; the first use opens both and uses meanwhile wait for it."""
        db = self._db
        if db is not None:
            return db
        async with self._opening:
            if self._closed:
                raise RuntimeError("the SQLite store is closed")
            if self._db is None:
                await asyncio.get_running_loop().run_in_executor(self._thread, self._open)
            assert self._db is not None
            return self._db

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        """`function(connection, *args)` inline; on the thread if another writer holds the file."""
        db = await self._ready()
        try:
            return function(db, *args)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        return await self._on_thread(function, *args)

    async def _on_thread(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, function, self._worker, *args)

    async def _write(self, body: Callable[..., T], *args: Any, alone: bool = False) -> T:
        """`body(connection, *args)` in the next group commit; its result once committed.
        `alone`: the body is one statement, atomic without a transaction of its own."""
        await self._ready()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Write(body, args, alone, future))
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(self._commit)
        result: T = await future
        self._wrote()
        return result

    def _commit(self) -> None:
        """Run the pending writes in one transaction, each in a savepoint of its own; whatever
        goes wrong reaches the writers, never the event loop (a write that never ends)."""
        batch, self._pending = self._pending, []
        db = self._db
        if db is None:  # closed meanwhile
            for write in batch:
                _settle(write.future, error=RuntimeError("the SQLite store is closed"))
        elif len(batch) == 1:  # nothing to share a commit with: as it comes, no savepoint
            self._commit_one(db, batch[0])
        else:
            try:
                self._commit_many(db, batch)
            except BaseException as exc:
                for write in batch:
                    _settle(write.future, error=exc)
                if not isinstance(exc, Exception):
                    raise

    def _commit_many(self, db: sqlite3.Connection, batch: list[_Write]) -> None:
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not _locked(exc):
                raise
            for write in batch:  # the thread's connection holds the file: wait there
                self._on_thread_one(write)
            return
        done: list[tuple[_Write, Any, Exception | None]] = []
        try:
            for write in batch:
                db.execute("SAVEPOINT write")
                try:
                    result = write.body(db, *write.args)
                except Exception as exc:
                    db.execute("ROLLBACK TO write")
                    db.execute("RELEASE write")
                    done.append((write, None, exc))
                else:
                    db.execute("RELEASE write")
                    done.append((write, result, None))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # nothing of the batch is written
                db.execute("ROLLBACK")
            raise
        for write, result, error in done:
            _settle(write.future, result, error)

    def _commit_one(self, db: sqlite3.Connection, write: _Write) -> None:
        """One write in a transaction of its own; on the thread if the file is locked."""
        try:
            result = write.body(db, *write.args) if write.alone else _atomic(db, write)
        except sqlite3.OperationalError as exc:
            if _locked(exc):
                self._on_thread_one(write)
                return
            _settle(write.future, error=exc)
        except Exception as exc:
            _settle(write.future, error=exc)
        else:
            _settle(write.future, result)

    def _on_thread_one(self, write: _Write) -> None:
        """One write on the store's thread, which waits for the lock (busy_timeout)."""
        body = write.body if write.alone else _atomic_body(write)
        done = asyncio.ensure_future(self._on_thread(body, *write.args))
        done.add_done_callback(lambda f: _settle_from(write.future, f))

    def _wrote(self) -> None:
        """After a write: now and then a checkpoint or a prune, in the background."""
        self._writes += 1
        if self._writes % CHECKPOINT_EVERY == 0:
            self._in_background(_checkpoint)
        now = time.time()
        if now - self._last_prune > PRUNE_EVERY:
            self._last_prune = now
            self._in_background(_prune_counters, now)

    def _in_background(self, function: Callable[..., Any], *args: Any) -> None:
        future = asyncio.ensure_future(self._on_thread(function, *args))
        self._background.add(future)
        future.add_done_callback(self._background_done)

    def _background_done(self, future: asyncio.Future[Any]) -> None:
        self._background.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.warning("store: background maintenance failed: %r", future.exception())

    async def open(self) -> None:
        """Open an existing file now (so a broken one fails start-up); a new one waits for use."""
        if self.path.exists():
            await self._ready()

    async def close(self) -> None:
        """Wait for maintenance, close both connections (a last checkpoint), stop the thread."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._pending:  # writes asked for just now are committed, not lost
            self._commit()
        async with self._opening:  # an opening in progress ends first, and none begins after
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._worker is not None:
                await asyncio.get_running_loop().run_in_executor(self._thread, self._worker.close)
                self._worker = None
        self._thread.shutdown(wait=False)

    async def list_read(
        self, namespace: str, key: str, *, limit: int, since: float = 0.0
    ) -> list[Any]:
        """The newest `limit` items at or after `since`, oldest first."""
        if self._db is None and not self.path.exists():
            return []
        return await self._run(_list_read, namespace, key, limit, since)

    async def list_push(self, namespace: str, key: str, items: Sequence[Any], *, keep: int) -> None:
        """Add items in one transaction, keep the newest `keep`."""
        rows = [_dumps(item) for item in items]
        await self._write(_list_push, namespace, key, rows, keep)

    async def list_set(self, namespace: str, key: str, items: Sequence[Any]) -> None:
        """Make the list exactly `items`, in one transaction."""
        rows = [_dumps(item) for item in items]
        await self._write(_list_set, namespace, key, rows)

    async def list_rename(self, namespace: str, old: str, new: str) -> None:
        """Rename `old` and the lists under it, in one statement (the moved rows keep their
        lower ids, so they stay before what `new` held)."""
        await self._write(
            _execute,
            "UPDATE lists SET key = ? || substr(key, ?) "
            "WHERE namespace = ? AND (key = ? OR substr(key, 1, ?) = ?)",
            new,
            len(old) + 1,
            namespace,
            old,
            len(old) + 1,
            old + ":",
            alone=True,
        )

    async def list_expire(self, namespace: str, before: float) -> None:
        """Drop items older than `before` (on the thread: it may delete many rows)."""
        await self._ready()
        await self._on_thread(_list_expire, namespace, before)

    async def get(self, namespace: str, key: str) -> Any:
        """The value, or None."""
        if self._db is None and not self.path.exists():
            return None
        return await self._run(_get, namespace, key)

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
        await self._write(_execute, sql, *args, alone=True)

    async def scan(self, namespace: str) -> dict[str, Any]:
        """Every key and value in a namespace (reading a file not yet created does not create it:
        start-up reads the settings changed in chat)."""
        if self._db is None and not self.path.exists():
            return {}
        return await self._run(_scan, namespace)

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
        return await self._write(_add, namespace, key, amount, limit, ttl, alone=limit is None)

    async def add_many(self, namespace: str, changes: Sequence[Change]) -> None:
        """Add to several counters in one transaction (one commit: a fifth of the CPU of one
        commit per counter)."""
        if changes:
            await self._write(_add_many, namespace, changes)

    async def totals(self, namespace: str, prefix: str = "") -> dict[str, float]:
        """Live counters whose keys start with `prefix`."""
        if self._db is None and not self.path.exists():
            return {}
        return await self._run(_totals, namespace, prefix)

    def lock(
        self, name: str, *, timeout: float = 120.0, order: int | None = None
    ) -> AbstractAsyncContextManager[None]:
        """An in-process lock: a SQLite store has one bot process."""
        return self._locks.hold(name)


def _list_read(
    db: sqlite3.Connection, namespace: str, key: str, limit: int, since: float
) -> list[Any]:
    rows = db.execute(
        "SELECT item FROM lists WHERE namespace = ? AND key = ? AND created >= ? "
        "ORDER BY id DESC LIMIT ?",
        (namespace, key, since, limit),
    ).fetchall()
    # One parse of the joined rows: a third of the CPU of parsing each row on its own.
    found: list[Any] = orjson.loads("[" + ",".join([r[0] for r in reversed(rows)]) + "]")
    return found


APPEND = "INSERT INTO lists (namespace, key, created, item) VALUES (?, ?, ?, ?)"
"""Append one item to a list (executemany: several, in order)."""


def _list_push(
    db: sqlite3.Connection, namespace: str, key: str, rows: list[str], keep: int
) -> None:
    now = time.time()
    db.executemany(APPEND, [(namespace, key, now, row) for row in rows])
    db.execute(
        "DELETE FROM lists WHERE namespace = ? AND key = ? AND id <= ("
        "SELECT id FROM lists WHERE namespace = ? AND key = ? "
        "ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (namespace, key, namespace, key, keep),
    )


def _list_set(db: sqlite3.Connection, namespace: str, key: str, rows: list[str]) -> None:
    now = time.time()
    db.execute("DELETE FROM lists WHERE namespace = ? AND key = ?", (namespace, key))
    db.executemany(APPEND, [(namespace, key, now, row) for row in rows])


def _dumps(item: Any) -> str:
    """An item as a JSON row: orjson, ~30x json.dumps for a conversation's worth (bench/)."""
    return orjson.dumps(item, option=orjson.OPT_NON_STR_KEYS).decode()


def _list_expire(db: sqlite3.Connection, namespace: str, before: float) -> None:
    """Delete the namespace's items up to the newest one created before `before`, found by a
    binary search over ids: items are numbered as they are added, so `created` grows with `id`.
    No index on `created` to keep up: it made every append write a third more (bench/)."""
    low, high = db.execute("SELECT MIN(id), MAX(id) FROM lists").fetchone()
    cutoff = None
    while low is not None and low <= high:
        middle = (low + high) // 2
        found, created = db.execute(
            "SELECT id, created FROM lists WHERE id >= ? ORDER BY id LIMIT 1", (middle,)
        ).fetchone()
        if created < before:
            cutoff, low = found, found + 1
        else:
            high = middle - 1
    if cutoff is not None:
        db.execute("DELETE FROM lists WHERE namespace = ? AND id <= ?", (namespace, cutoff))


def _execute(db: sqlite3.Connection, sql: str, *args: Any) -> None:
    db.execute(sql, args)


def _get(db: sqlite3.Connection, namespace: str, key: str) -> Any:
    row = db.execute(
        "SELECT value FROM records WHERE namespace = ? AND key = ?", (namespace, key)
    ).fetchone()
    return None if row is None else json.loads(row[0])


def _scan(db: sqlite3.Connection, namespace: str) -> dict[str, Any]:
    rows = db.execute(
        "SELECT key, value FROM records WHERE namespace = ? ORDER BY key", (namespace,)
    )
    return {key: json.loads(value) for key, value in rows}


def _add(
    db: sqlite3.Connection,
    namespace: str,
    key: str,
    amount: float,
    limit: float | None,
    ttl: float | None,
) -> float | None:
    now = time.time()
    if limit is None:  # one statement, its own transaction: a quarter of the calls into SQLite
        ((total,),) = db.execute(ADD, (namespace, key, amount, _expiry(now, ttl), now, now))
        return float(total)
    row = db.execute(
        "SELECT value, expires FROM counters WHERE namespace = ? AND key = ?",
        (namespace, key),
    ).fetchone()
    if row is None or (row[1] is not None and row[1] <= now):
        value, expires = 0.0, _expiry(now, ttl)
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


def _add_many(db: sqlite3.Connection, namespace: str, changes: Sequence[Change]) -> None:
    now = time.time()
    db.executemany(
        ADD_MANY,
        [(namespace, key, amount, _expiry(now, ttl), now, now) for key, amount, ttl in changes],
    )


def _expiry(now: float, ttl: float | None) -> float | None:
    return None if ttl is None else now + ttl


ADD = """
INSERT INTO counters (namespace, key, value, expires) VALUES (?, ?, ?, ?)
ON CONFLICT (namespace, key) DO UPDATE SET
    value = CASE WHEN expires <= ? THEN excluded.value ELSE value + excluded.value END,
    expires = CASE WHEN expires <= ? THEN excluded.expires ELSE expires END
RETURNING value
"""
"""Add to a counter; one that expired starts afresh (its new expiry given), like a new one."""
ADD_MANY = ADD.replace("RETURNING value", "")


def _totals(db: sqlite3.Connection, namespace: str, prefix: str) -> dict[str, float]:
    rows = db.execute(
        "SELECT key, value FROM counters WHERE namespace = ? AND substr(key, 1, ?) = ? "
        "AND (expires IS NULL OR expires > ?) ORDER BY key",
        (namespace, len(prefix), prefix, time.time()),
    )
    return {key: float(value) for key, value in rows}


def _checkpoint(db: sqlite3.Connection) -> None:
    """Copy the WAL into the database file (the fsyncs happen here, off the event loop)."""
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _prune_counters(db: sqlite3.Connection, now: float) -> None:
    db.execute("DELETE FROM counters WHERE expires IS NOT NULL AND expires <= ?", (now,))


class _Write(NamedTuple):
    """A write waiting for the group commit: its body, its arguments, whether it is one atomic
    statement, and the future its caller awaits."""

    body: Callable[..., Any]
    args: tuple[Any, ...]
    alone: bool
    future: asyncio.Future[Any]


def _atomic(db: sqlite3.Connection, write: _Write) -> Any:
    """A write's body in a transaction of its own (committed, or rolled back if it raises)."""
    with db:
        db.execute("BEGIN IMMEDIATE")
        return write.body(db, *write.args)


def _atomic_body(write: _Write) -> Callable[..., Any]:
    """`_atomic` for the thread's connection, which is given as the first argument."""

    def run(db: sqlite3.Connection, *args: Any) -> Any:
        return _atomic(db, write._replace(args=args))

    return run


def _locked(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _settle(
    future: asyncio.Future[Any], result: Any = None, error: BaseException | None = None
) -> None:
    """Hand a write's outcome to its caller, unless the caller stopped waiting (cancelled)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _settle_from(future: asyncio.Future[Any], done: asyncio.Future[Any]) -> None:
    if done.cancelled():
        _settle(future, error=asyncio.CancelledError())
    else:
        _settle(future, done.result() if done.exception() is None else None, done.exception())
