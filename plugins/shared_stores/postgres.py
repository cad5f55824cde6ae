"""A Store on PostgreSQL (asyncpg): one database that several bot processes share.

Every write is one statement or one transaction; a budget reservation is a single
INSERT ... ON CONFLICT DO UPDATE ... WHERE, so two processes can never both pass a limit. Locks are
leases in a table (see server.py), taken by one server-side function call. The tables
(all named botcore_*) are created on open, under an advisory lock so instances may start at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from botcore import SCHEMA_VERSION, Change, NewerSchema, Signal, check_schema

from .server import OLD_CONVERSATIONS, WAITER_TTL, hold, received, stop_task, unavailable

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger("botcore.store")
PRUNE_EVERY = 3600.0
SIGNALS = "botcore_signals"
"""The LISTEN/NOTIFY channel of Store.broadcast."""
RELISTEN_DELAY = 30.0
"""Seconds at most between attempts to listen again after the listening connection was lost."""
SCHEMA_LOCK = 0x626F74636F7265  # "botcore": serializes schema creation across instances

META = """
CREATE TABLE IF NOT EXISTS botcore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
"""
"""Facts about the database itself: its schema_version (botcore.store.SCHEMA_VERSION)."""
SCHEMA = """
CREATE TABLE IF NOT EXISTS botcore_lists (
    id BIGSERIAL PRIMARY KEY,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    item TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS botcore_lists_by_key ON botcore_lists (namespace, key, id);
CREATE INDEX IF NOT EXISTS botcore_lists_by_age ON botcore_lists (namespace, created);
CREATE TABLE IF NOT EXISTS botcore_records (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE TABLE IF NOT EXISTS botcore_counters (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    expires DOUBLE PRECISION,
    PRIMARY KEY (namespace, key)
);
CREATE TABLE IF NOT EXISTS botcore_locks (
    name TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    expires DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS botcore_lock_waiters (
    name TEXT NOT NULL,
    token TEXT NOT NULL,
    ord BIGINT NOT NULL,
    expires DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (name, token)
);
CREATE OR REPLACE FUNCTION botcore_try_lock(
    p_name TEXT, p_token TEXT, p_order BIGINT, p_ttl DOUBLE PRECISION, p_wait DOUBLE PRECISION
) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    now_ DOUBLE PRECISION := extract(epoch FROM clock_timestamp());
    head TEXT;
BEGIN
    IF p_order IS NOT NULL THEN
        INSERT INTO botcore_lock_waiters (name, token, ord, expires)
            VALUES (p_name, p_token, p_order, now_ + p_wait)
            ON CONFLICT (name, token) DO UPDATE SET expires = EXCLUDED.expires;
        DELETE FROM botcore_lock_waiters WHERE name = p_name AND expires < now_;
        SELECT token INTO head FROM botcore_lock_waiters
            WHERE name = p_name ORDER BY ord, token LIMIT 1;
        IF head IS DISTINCT FROM p_token THEN
            RETURN FALSE;
        END IF;
    END IF;
    INSERT INTO botcore_locks (name, token, expires) VALUES (p_name, p_token, now_ + p_ttl)
        ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token, expires = EXCLUDED.expires
        WHERE botcore_locks.expires < now_;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    DELETE FROM botcore_lock_waiters WHERE name = p_name AND token = p_token;
    RETURN TRUE;
END $$;
"""

MIGRATE_1 = f"""
ALTER TABLE botcore_messages RENAME TO botcore_lists;
ALTER TABLE botcore_lists RENAME COLUMN conversation TO key;
ALTER TABLE botcore_lists RENAME COLUMN message TO item;
ALTER TABLE botcore_lists ADD COLUMN namespace TEXT NOT NULL DEFAULT '{OLD_CONVERSATIONS}';
ALTER TABLE botcore_lists ALTER COLUMN namespace DROP DEFAULT;
DROP INDEX IF EXISTS botcore_messages_by_conversation;
DROP INDEX IF EXISTS botcore_messages_by_age;
"""
"""Schema 1's conversations become lists where they are (ids, order and times kept)."""

ADD = """
INSERT INTO botcore_counters AS c (namespace, key, value, expires)
SELECT $1, $2, $3, $5
WHERE $4::float8 IS NULL OR $3 <= $4 OR EXISTS (
    SELECT 1 FROM botcore_counters
    WHERE namespace = $1 AND key = $2 AND (expires IS NULL OR expires > $6)
)
ON CONFLICT (namespace, key) DO UPDATE SET
    value = CASE WHEN c.expires <= $6 THEN EXCLUDED.value ELSE c.value + EXCLUDED.value END,
    expires = CASE WHEN c.expires <= $6 THEN EXCLUDED.expires ELSE c.expires END
WHERE $4::float8 IS NULL
    OR (CASE WHEN c.expires <= $6 THEN EXCLUDED.value ELSE c.value + EXCLUDED.value END) <= $4
RETURNING c.value
"""


APPEND = (
    "INSERT INTO botcore_lists (namespace, key, created, item) "
    "SELECT $1, $2, $3, m FROM unnest($4::text[]) WITH ORDINALITY AS t(m, n) ORDER BY n"
)
"""Append items ($4, in order) to list ($1, $2), all created at $3."""


class PostgresStore:
    """The Store protocol on PostgreSQL; any number of bot processes may share one database."""

    shared = True

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._last_prune = 0.0
        self._listeners: list[Callable[[Signal], None]] = []
        self._listening: asyncio.Task[None] | None = None
        self._subscribing = asyncio.Lock()
        """Held while the signal connection opens: concurrent first listens share one."""

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool; only after open()."""
        if self._pool is None:
            raise RuntimeError("the PostgreSQL store is not open")
        return self._pool

    async def open(self) -> None:
        """Connect and create the tables; StoreUnavailable (without the password) on failure."""
        import asyncpg  # here: a bot on SQLite never pays for the import

        try:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.pool_size, timeout=10
            )
            async with self.pool.acquire() as db:
                await db.execute("SELECT pg_advisory_lock($1)", SCHEMA_LOCK)
                try:  # the version first: a newer botcore's tables and functions stay as they are
                    await db.execute(META)
                    found = await db.fetchval(
                        "SELECT value FROM botcore_meta WHERE key = $1", "schema_version"
                    )
                    check_schema(int(found) if found is not None else SCHEMA_VERSION)
                    async with db.transaction():
                        if await db.fetchval("SELECT to_regclass('botcore_messages')"):
                            await db.execute(MIGRATE_1)  # written by schema 1
                        await db.execute(SCHEMA)
                    await db.execute(
                        "INSERT INTO botcore_meta (key, value) VALUES ('schema_version', $1) "
                        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                        str(SCHEMA_VERSION),
                    )
                finally:
                    await db.execute("SELECT pg_advisory_unlock($1)", SCHEMA_LOCK)
        except NewerSchema:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise unavailable("postgres", self.url, exc) from None

    async def close(self) -> None:
        """Close every connection (a signal connection still opening is closed once it is)."""
        async with self._subscribing:
            task, self._listening = self._listening, None
        await stop_task(task)
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def list_read(
        self, namespace: str, key: str, *, limit: int, since: float = 0.0
    ) -> list[Any]:
        """The newest `limit` items at or after `since`, oldest first."""
        rows = await self.pool.fetch(
            "SELECT item FROM botcore_lists WHERE namespace = $1 AND key = $2 AND created >= $3 "
            "ORDER BY id DESC LIMIT $4",
            namespace,
            key,
            since,
            max(limit, 0),
        )
        return [json.loads(row[0]) for row in reversed(rows)]

    async def list_push(self, namespace: str, key: str, items: Sequence[Any], *, keep: int) -> None:
        """Add items and trim to the newest `keep`, in one transaction."""
        now = time.time()
        rows = [json.dumps(item, ensure_ascii=False) for item in items]
        async with self.pool.acquire() as db, db.transaction():
            await db.execute(
                APPEND,
                namespace,
                key,
                now,
                rows,
            )
            await db.execute(
                "DELETE FROM botcore_lists WHERE namespace = $1 AND key = $2 AND id <= ("
                "SELECT id FROM botcore_lists WHERE namespace = $1 AND key = $2 "
                "ORDER BY id DESC LIMIT 1 OFFSET $3)",
                namespace,
                key,
                keep,
            )
        if now - self._last_prune > PRUNE_EVERY:
            self._last_prune = now
            await self.pool.execute(
                "DELETE FROM botcore_counters WHERE expires IS NOT NULL AND expires <= $1", now
            )

    async def list_set(self, namespace: str, key: str, items: Sequence[Any]) -> None:
        """Make the list exactly `items`, in one transaction."""
        rows = [json.dumps(item, ensure_ascii=False) for item in items]
        async with self.pool.acquire() as db, db.transaction():
            await db.execute(
                "DELETE FROM botcore_lists WHERE namespace = $1 AND key = $2", namespace, key
            )
            await db.execute(
                APPEND,
                namespace,
                key,
                time.time(),
                rows,
            )

    async def list_rename(self, namespace: str, old: str, new: str) -> None:
        """Rename `old` and the lists under it, in one statement (the moved rows keep their
        lower ids, so they stay before what `new` held)."""
        await self.pool.execute(
            "UPDATE botcore_lists SET key = $1 || substr(key, $2) "
            "WHERE namespace = $6 AND (key = $3 OR left(key, $4) = $5)",
            new,
            len(old) + 1,
            old,
            len(old) + 1,
            old + ":",
            namespace,
        )

    async def list_expire(self, namespace: str, before: float) -> None:
        """Drop the namespace's items older than `before`."""
        await self.pool.execute(
            "DELETE FROM botcore_lists WHERE namespace = $1 AND created < $2", namespace, before
        )

    async def get(self, namespace: str, key: str) -> Any:
        """The value, or None."""
        raw = await self.pool.fetchval(
            "SELECT value FROM botcore_records WHERE namespace = $1 AND key = $2", namespace, key
        )
        return None if raw is None else json.loads(raw)

    async def put(self, namespace: str, key: str, value: Any) -> None:
        """Set a value; None deletes it."""
        if value is None:
            await self.pool.execute(
                "DELETE FROM botcore_records WHERE namespace = $1 AND key = $2", namespace, key
            )
            return
        await self.pool.execute(
            "INSERT INTO botcore_records (namespace, key, value) VALUES ($1, $2, $3) "
            "ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value",
            namespace,
            key,
            json.dumps(value, ensure_ascii=False),
        )

    async def scan(self, namespace: str) -> dict[str, Any]:
        """Every key and value in a namespace."""
        rows = await self.pool.fetch(
            "SELECT key, value FROM botcore_records WHERE namespace = $1 ORDER BY key", namespace
        )
        return {row[0]: json.loads(row[1]) for row in rows}

    async def add(
        self,
        namespace: str,
        key: str,
        amount: float,
        *,
        limit: float | None = None,
        ttl: float | None = None,
    ) -> float | None:
        """Add to a counter unless it would pass `limit`: one atomic statement."""
        now = time.time()
        expires = now + ttl if ttl is not None else None
        total = await self.pool.fetchval(ADD, namespace, key, float(amount), limit, expires, now)
        return None if total is None else float(total)

    async def add_many(self, namespace: str, changes: Sequence[Change]) -> None:
        """Add to several counters: one prepared statement for all, in one transaction."""
        if not changes:
            return
        now = time.time()
        rows = [
            (namespace, key, float(amount), None, now + ttl if ttl is not None else None, now)
            for key, amount, ttl in changes
        ]
        await self.pool.executemany(ADD, rows)  # asyncpg runs executemany atomically

    async def totals(self, namespace: str, prefix: str = "") -> dict[str, float]:
        """Live counters whose keys start with `prefix`."""
        rows = await self.pool.fetch(
            "SELECT key, value FROM botcore_counters WHERE namespace = $1 "
            "AND left(key, length($2)) = $2 AND (expires IS NULL OR expires > $3) ORDER BY key",
            namespace,
            prefix,
            time.time(),
        )
        return {row[0]: float(row[1]) for row in rows}

    async def broadcast(self, message: Signal) -> None:
        """NOTIFY every process LISTENing on this database."""
        await self.pool.execute("SELECT pg_notify($1, $2)", SIGNALS, json.dumps(message))

    async def listen(self, callback: Callable[[Signal], None]) -> None:
        """LISTEN on a connection of its own (outside the pool), kept open and reopened if lost;
        the first call opens it and calls meanwhile wait for that one (a failed one for none)."""
        async with self._subscribing:
            if self._listening is None:
                connection = await self._listen()
                self._listening = asyncio.create_task(self._keep_listening(connection))
        self._listeners.append(callback)

    async def _listen(self) -> asyncpg.Connection:
        import asyncpg

        connection = await asyncpg.connect(self.url, timeout=10)
        try:
            await connection.add_listener(SIGNALS, self._notified)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)
            raise
        return connection

    async def _keep_listening(self, connection: asyncpg.Connection) -> None:
        delay = 1.0
        while True:
            await _until_lost(connection)
            log.warning("store: the PostgreSQL connection for signals was lost; listening again")
            while True:
                await asyncio.sleep(delay)
                try:
                    connection = await self._listen()
                    break
                except Exception as exc:
                    log.warning("store: cannot listen for signals: %s", type(exc).__name__)
                    delay = min(delay * 2, RELISTEN_DELAY)
            delay = 1.0

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        received(self._listeners, payload)

    def lock(
        self, name: str, *, timeout: float = 120.0, order: int | None = None
    ) -> AbstractAsyncContextManager[None]:
        """A lease in botcore_locks, shared by every process on this database."""
        return hold(self, name, timeout, order)

    async def try_acquire(self, name: str, token: str, order: int | None, lease: float) -> bool:
        """One call of botcore_try_lock (see SCHEMA)."""
        wait = min(lease, WAITER_TTL)
        return bool(
            await self.pool.fetchval(
                "SELECT botcore_try_lock($1, $2, $3, $4, $5)", name, token, order, lease, wait
            )
        )

    async def renew(self, name: str, token: str, lease: float) -> bool:
        """Push our lease's end `lease` seconds ahead."""
        found = await self.pool.fetchval(
            "UPDATE botcore_locks SET expires = extract(epoch FROM clock_timestamp()) + $3 "
            "WHERE name = $1 AND token = $2 RETURNING 1",
            name,
            token,
            lease,
        )
        return found is not None

    async def release(self, name: str, token: str) -> None:
        """Drop our lease and our place in line."""
        async with self.pool.acquire() as db, db.transaction():
            await db.execute(
                "DELETE FROM botcore_locks WHERE name = $1 AND token = $2", name, token
            )
            await db.execute(
                "DELETE FROM botcore_lock_waiters WHERE name = $1 AND token = $2", name, token
            )


async def _until_lost(connection: asyncpg.Connection) -> None:
    """Wait until the connection is closed or lost, then make sure it is closed."""
    lost = asyncio.Event()
    connection.add_termination_listener(lambda _: lost.set())
    try:
        await lost.wait()
    finally:
        with contextlib.suppress(Exception):
            await connection.close(timeout=2)
