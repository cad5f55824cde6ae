"""Test-time helpers of the shared stores: empty one between tests, see who waits for a lock."""

from __future__ import annotations

import botcore

from .postgres import PostgresStore
from .redis import RedisStore


async def wipe(store: botcore.Store) -> None:
    """Delete everything botcore keeps on an open server store (tests only), but for the
    schema version it recorded at open."""
    if isinstance(store, PostgresStore):
        await store.pool.execute(
            "TRUNCATE botcore_lists, botcore_records, botcore_counters, botcore_locks, "
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


async def waiting(store: botcore.Store, lock: str) -> int:
    """How many clients wait in line (with `order`) for a lock on a server store."""
    if isinstance(store, PostgresStore):
        count = await store.pool.fetchval(
            "SELECT count(*) FROM botcore_lock_waiters WHERE name = $1", lock
        )
        return int(count)
    assert isinstance(store, RedisStore)
    return int(await store.redis.zcard(f"botcore:lq:{lock}"))
