"""A Store on Redis (redis-py's asyncio client): one server that several bot processes share.

Keys start with "botcore:". A list is a Redis list of "<unix time> <json>" entries, its key in a
set per namespace; records are a hash per namespace; a counter is a string key (its window is the
key's TTL) listed in a set per namespace. A budget reservation and a lock attempt are each one Lua
script, so they are atomic. Locks are leases (SET NX PX with a random token, released by
compare-and-delete); see server.py.
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
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub
    from redis.commands.core import AsyncScript

log = logging.getLogger("botcore.store")
P = "botcore:"
OLD_LISTS = (P + "conversations", P + "m:")
"""Schema 1's set of conversation names, and the prefix of each conversation's list."""
META = P + "meta"
"""A hash of facts about the data itself: its schema_version (botcore.store.SCHEMA_VERSION)."""
SIGNALS = P + "signals"
"""The pub/sub channel of Store.broadcast."""
RELISTEN_DELAY = 30.0
"""Seconds at most between attempts to read signals again after the connection failed."""

ADD = """
local current = redis.call('GET', KEYS[1])
local total = (tonumber(current) or 0) + tonumber(ARGV[1])
if ARGV[2] ~= '' and total > tonumber(ARGV[2]) then return false end
local result = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if not current and ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
redis.call('SADD', KEYS[2], ARGV[4])
return result
"""

EXPIRE = """
local before = tonumber(ARGV[1])
while true do
  local first = redis.call('LINDEX', KEYS[1], 0)
  if not first then return 1 end
  if tonumber(string.sub(first, 1, string.find(first, ' ') - 1)) >= before then return 0 end
  redis.call('LPOP', KEYS[1])
end
"""

MIGRATE_1 = """
local names = redis.call('SMEMBERS', KEYS[1])
for _, name in ipairs(names) do
  if redis.call('EXISTS', ARGV[1] .. name) == 1 then
    redis.call('RENAME', ARGV[1] .. name, ARGV[2] .. name)
    redis.call('SADD', KEYS[2], name)
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[3], 'schema_version', ARGV[3])
return #names
"""
"""Schema 1's conversations become lists (entries as they were), and the version is recorded: one
script, so instances opening at once cannot both move them."""

MOVE = """
local moved = redis.call('LRANGE', KEYS[1], 0, -1)
for i = #moved, 1, -1 do redis.call('LPUSH', KEYS[2], moved[i]) end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[1])
if #moved > 0 then redis.call('SADD', KEYS[3], ARGV[2]) end
return #moved
"""
"""Prepend one list to another and forget it, atomically (an append to either
cannot fall between the read and the delete)."""

TRY_LOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], now + tonumber(ARGV[4]))
  while true do
    local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
    if not head then break end
    local deadline = tonumber(redis.call('HGET', KEYS[3], head))
    if deadline and deadline > now then break end
    redis.call('ZREM', KEYS[2], head)
    redis.call('HDEL', KEYS[3], head)
  end
  if redis.call('ZRANGE', KEYS[2], 0, 0)[1] ~= ARGV[1] then return 0 end
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""


def _list(namespace: str, key: str) -> str:
    return f"{P}l:{len(namespace)}:{namespace}:{key}"


def _lists(namespace: str) -> str:
    """The set of a namespace's list keys (for list_rename and list_expire)."""
    return f"{P}li:{namespace}"


def _counter(namespace: str, key: str) -> str:
    return f"{P}c:{len(namespace)}:{namespace}:{key}"


def _add_args(
    namespace: str, key: str, amount: float, limit: float | None, ttl: float | None
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of the ADD script."""
    return [_counter(namespace, key), f"{P}ci:{namespace}"], [
        repr(float(amount)),
        "" if limit is None else repr(float(limit)),
        "" if ttl is None else max(int(ttl * 1000), 1),
        key,
    ]


async def _close(pubsub: PubSub) -> None:
    """Close a subscription's connection; an error closing it changes nothing for the caller."""
    with contextlib.suppress(Exception):
        await pubsub.aclose()


def _lock_keys(name: str) -> list[str]:
    return [f"{P}l:{name}", f"{P}lq:{name}", f"{P}lw:{name}"]


class RedisStore:
    """The Store protocol on Redis; any number of bot processes may share one server."""

    shared = True

    def __init__(self, url: str) -> None:
        self.url = url
        self._redis: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._listeners: list[Callable[[Signal], None]] = []
        self._pubsub: PubSub | None = None
        self._listening: asyncio.Task[None] | None = None
        self._subscribing = asyncio.Lock()
        """Held while the signal subscription opens: concurrent first listens share one."""

    @property
    def redis(self) -> Redis:
        """The client; only after open()."""
        if self._redis is None:
            raise RuntimeError("the Redis store is not open")
        return self._redis

    async def open(self) -> None:
        """Connect and check the server answers; StoreUnavailable (without the password)."""
        from redis.asyncio import Redis  # here: a bot on SQLite never pays for the import

        try:
            self._redis = Redis.from_url(self.url, decode_responses=True, socket_connect_timeout=10)
            await self._redis.ping()
            await self._redis.hsetnx(META, "schema_version", SCHEMA_VERSION)
            found = await self._redis.hget(META, "schema_version")
            check_schema(int(found) if found is not None else SCHEMA_VERSION)
            await self._redis.eval(
                MIGRATE_1,
                3,
                OLD_LISTS[0],
                _lists(OLD_CONVERSATIONS),
                META,
                OLD_LISTS[1],
                _list(OLD_CONVERSATIONS, ""),
                SCHEMA_VERSION,
            )
        except NewerSchema:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise unavailable("redis", self.url, exc) from None
        for name, source in (
            ("add", ADD),
            ("expire", EXPIRE),
            ("move", MOVE),
            ("try_lock", TRY_LOCK),
            ("renew", RENEW),
            ("release", RELEASE),
        ):
            self._scripts[name] = self._redis.register_script(source)

    async def close(self) -> None:
        """Close the connections (a subscription still opening is closed once it is)."""
        async with self._subscribing:
            task, self._listening = self._listening, None
            pubsub, self._pubsub = self._pubsub, None
        await stop_task(task)
        if pubsub is not None:
            await _close(pubsub)
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

    async def list_read(
        self, namespace: str, key: str, *, limit: int, since: float = 0.0
    ) -> list[Any]:
        """The newest `limit` items at or after `since`, oldest first."""
        if limit <= 0:
            return []
        entries = await self.redis.lrange(_list(namespace, key), -limit, -1)
        found = []
        for entry in entries:
            created, _, item = str(entry).partition(" ")
            if float(created) >= since:
                found.append(json.loads(item))
        return found

    async def list_push(self, namespace: str, key: str, items: Sequence[Any], *, keep: int) -> None:
        """Add items and trim to the newest `keep`, in one MULTI/EXEC."""
        now = f"{time.time():.6f}"
        entries = [f"{now} {json.dumps(item, ensure_ascii=False)}" for item in items]
        name = _list(namespace, key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(name, *entries)
            if keep > 0:
                pipe.ltrim(name, -keep, -1)
            else:
                pipe.delete(name)
            pipe.sadd(_lists(namespace), key)
            await pipe.execute()

    async def list_set(self, namespace: str, key: str, items: Sequence[Any]) -> None:
        """Make the list exactly `items`, in one MULTI/EXEC."""
        now = f"{time.time():.6f}"
        name = _list(namespace, key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(name)
            if items:
                pipe.rpush(name, *(f"{now} {json.dumps(i, ensure_ascii=False)}" for i in items))
                pipe.sadd(_lists(namespace), key)
            else:
                pipe.srem(_lists(namespace), key)
            await pipe.execute()

    async def list_rename(self, namespace: str, old: str, new: str) -> None:
        """Rename `old` and the lists under it, each atomically (MOVE)."""
        index = _lists(namespace)
        found = [
            str(key)
            async for key in self.redis.sscan_iter(index, count=500)
            if str(key) == old or str(key).startswith(old + ":")
        ]
        for key in found:
            target = new + key[len(old) :]
            await self._scripts["move"](
                keys=[_list(namespace, key), _list(namespace, target), index],
                args=[key, target],
            )

    async def list_expire(self, namespace: str, before: float) -> None:
        """Drop items older than `before` from the head of each of the namespace's lists."""
        index = _lists(namespace)
        async for key in self.redis.sscan_iter(index, count=500):
            emptied = await self._scripts["expire"](keys=[_list(namespace, key)], args=[before])
            if emptied:
                await self.redis.srem(index, key)

    async def get(self, namespace: str, key: str) -> Any:
        """The value, or None."""
        raw = await self.redis.hget(f"{P}r:{namespace}", key)
        return None if raw is None else json.loads(raw)

    async def put(self, namespace: str, key: str, value: Any) -> None:
        """Set a value; None deletes it."""
        if value is None:
            await self.redis.hdel(f"{P}r:{namespace}", key)
        else:
            await self.redis.hset(f"{P}r:{namespace}", key, json.dumps(value, ensure_ascii=False))

    async def scan(self, namespace: str) -> dict[str, Any]:
        """Every key and value in a namespace."""
        found = await self.redis.hgetall(f"{P}r:{namespace}")
        return {str(key): json.loads(found[key]) for key in sorted(found)}

    async def add(
        self,
        namespace: str,
        key: str,
        amount: float,
        *,
        limit: float | None = None,
        ttl: float | None = None,
    ) -> float | None:
        """Add to a counter unless it would pass `limit`: one Lua script."""
        keys, args = _add_args(namespace, key, amount, limit, ttl)
        total = await self._scripts["add"](keys=keys, args=args)
        return None if total is None else float(total)

    async def add_many(self, namespace: str, changes: Sequence[Change]) -> None:
        """Add to several counters: the add script once per counter in one MULTI/EXEC."""
        if not changes:
            return
        script = self._scripts["add"]
        async with self.redis.pipeline(transaction=True) as pipe:
            for key, amount, ttl in changes:
                keys, args = _add_args(namespace, key, amount, None, ttl)
                await script(keys=keys, args=args, client=pipe)
            await pipe.execute()

    async def totals(self, namespace: str, prefix: str = "") -> dict[str, float]:
        """Live counters whose keys start with `prefix`; expired ones leave the index."""
        index = f"{P}ci:{namespace}"
        keys = sorted(k for k in map(str, await self.redis.smembers(index)) if k.startswith(prefix))
        if not keys:
            return {}
        values = await self.redis.mget([_counter(namespace, k) for k in keys])
        gone = [k for k, v in zip(keys, values, strict=True) if v is None]
        if gone:
            await self.redis.srem(index, *gone)
        return {k: float(v) for k, v in zip(keys, values, strict=True) if v is not None}

    async def broadcast(self, message: Signal) -> None:
        """PUBLISH to every process subscribed on this server."""
        await self.redis.publish(SIGNALS, json.dumps(message))

    async def listen(self, callback: Callable[[Signal], None]) -> None:
        """SUBSCRIBE (on a connection of its own, re-subscribed by redis-py if it is lost); the
        first call subscribes and calls meanwhile wait for that one (a failed one for none)."""
        async with self._subscribing:
            if self._pubsub is None:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(SIGNALS)
                except BaseException:
                    await _close(pubsub)
                    raise
                self._pubsub = pubsub
                self._listening = asyncio.create_task(self._read_signals(pubsub))
        self._listeners.append(callback)

    async def _read_signals(self, pubsub: PubSub) -> None:
        delay = 1.0
        while True:
            try:
                async for message in pubsub.listen():
                    delay = 1.0
                    if isinstance(message, dict) and message.get("type") == "message":
                        received(self._listeners, message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("store: reading signals from Redis failed: %s", type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RELISTEN_DELAY)

    def lock(
        self, name: str, *, timeout: float = 120.0, order: int | None = None
    ) -> AbstractAsyncContextManager[None]:
        """A lease (SET NX PX), shared by every process on this server."""
        return hold(self, name, timeout, order)

    async def try_acquire(self, name: str, token: str, order: int | None, lease: float) -> bool:
        """One run of TRY_LOCK."""
        wait = min(lease, WAITER_TTL)
        taken = await self._scripts["try_lock"](
            keys=_lock_keys(name),
            args=[token, "" if order is None else order, int(lease * 1000), int(wait * 1000)],
        )
        return bool(taken)

    async def renew(self, name: str, token: str, lease: float) -> bool:
        """Push our lease's end `lease` seconds ahead."""
        renewed = await self._scripts["renew"](
            keys=_lock_keys(name)[:1], args=[token, int(lease * 1000)]
        )
        return bool(renewed)

    async def release(self, name: str, token: str) -> None:
        """Drop our lease (compare-and-delete) and our place in line."""
        await self._scripts["release"](keys=_lock_keys(name), args=[token])
