"""Test servers for the shared stores: where they are, and how to start each test from empty.

scripts/services.sh (run by ./test.sh) starts private PostgreSQL and Redis servers and exports
BOTCORE_TEST_POSTGRES_URL and BOTCORE_TEST_REDIS_URL. Without them a test that needs a server is
skipped with the reason, except under CI=true, where a missing server fails the test.
"""

from __future__ import annotations

import os
from typing import Literal

import pytest

from botcore.store import Store

Server = Literal["postgres", "redis"]
SERVERS: tuple[Server, ...] = ("postgres", "redis")
ENV = {"postgres": "BOTCORE_TEST_POSTGRES_URL", "redis": "BOTCORE_TEST_REDIS_URL"}


def server_url(backend: Server) -> str:
    """The test server's URL; skips (fails under CI=true) when it is not set."""
    url = os.environ.get(ENV[backend])
    if url:
        return url
    reason = f"{ENV[backend]} is not set (./test.sh starts a {backend} server and sets it)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI needs the {backend} tests: {reason}")
    pytest.skip(reason)


def server_store(backend: Server) -> Store:
    """A new, unopened store on the test server."""
    url = server_url(backend)
    if backend == "postgres":
        from botcore.stores.postgres import PostgresStore

        return PostgresStore(url)
    from botcore.stores.redis import RedisStore

    return RedisStore(url)


async def wipe(store: Store) -> None:
    """Delete everything botcore keeps on an open server store (tests only), but for the
    schema version it recorded at open."""
    from botcore.stores.postgres import PostgresStore
    from botcore.stores.redis import RedisStore

    if isinstance(store, PostgresStore):
        await store.pool.execute(
            "TRUNCATE botcore_messages, botcore_records, botcore_counters, botcore_locks, "
            "botcore_lock_waiters"
        )
    elif isinstance(store, RedisStore):
        keys = [
            key
            async for key in store.redis.scan_iter(match="botcore:*", count=1000)
            if key != "botcore:meta"
        ]
        if keys:
            await store.redis.delete(*keys)


async def waiting(store: Store, lock: str) -> int:
    """How many clients wait in line (with `order`) for a lock on a server store."""
    from botcore.stores.postgres import PostgresStore
    from botcore.stores.redis import RedisStore

    if isinstance(store, PostgresStore):
        count = await store.pool.fetchval(
            "SELECT count(*) FROM botcore_lock_waiters WHERE name = $1", lock
        )
        return int(count)
    assert isinstance(store, RedisStore)
    return int(await store.redis.zcard(f"botcore:lq:{lock}"))
