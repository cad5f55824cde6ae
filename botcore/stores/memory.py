"""A Store in this process's memory: for tests and the console; everything is gone on exit."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from botcore.store import (
    SCHEMA_VERSION,
    Change,
    LocalLocks,
    LocalSignals,
    check_schema,
)


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ":")


class MemoryStore(LocalSignals):
    """Dicts and lists; values are copied in and out, as a real backend would serialize them."""

    shared = False

    def __init__(self) -> None:
        super().__init__()
        self._lists: dict[tuple[str, str], list[tuple[float, Any]]] = {}
        self._records: dict[str, dict[str, str]] = {}
        self._counters: dict[str, dict[str, tuple[float, float | None]]] = {}
        self._locks = LocalLocks()
        self.meta: dict[str, int] = {}
        """What the other backends keep in their meta table: {"schema_version": 1}."""

    async def open(self) -> None:
        """Nothing to connect to; the schema version is recorded (and checked) as elsewhere."""
        check_schema(self.meta.setdefault("schema_version", SCHEMA_VERSION))

    async def close(self) -> None:
        """Nothing to release."""

    async def list_read(
        self, namespace: str, key: str, *, limit: int, since: float = 0.0
    ) -> list[Any]:
        """The newest `limit` items at or after `since`, oldest first."""
        rows = [item for t, item in self._lists.get((namespace, key), []) if t >= since]
        return copy.deepcopy(rows[-limit:] if limit > 0 else [])

    async def list_push(self, namespace: str, key: str, items: Sequence[Any], *, keep: int) -> None:
        """Add items, keep the newest `keep`."""
        now = time.time()
        rows = self._lists.setdefault((namespace, key), [])
        rows.extend((now, json.loads(json.dumps(item))) for item in items)
        del rows[: max(len(rows) - keep, 0)]
        if not rows:
            del self._lists[namespace, key]

    async def list_set(self, namespace: str, key: str, items: Sequence[Any]) -> None:
        """Make the list exactly `items`."""
        self._lists.pop((namespace, key), None)
        if items:
            await self.list_push(namespace, key, items, keep=len(items))

    async def list_rename(self, namespace: str, old: str, new: str) -> None:
        """Rename `old` and the lists under it; what `new` held goes after."""
        for ns, key in [k for k in self._lists if k[0] == namespace and _under(k[1], old)]:
            moved = self._lists.pop((ns, key))
            target = (ns, new + key[len(old) :])
            self._lists[target] = moved + self._lists.get(target, [])

    async def list_expire(self, namespace: str, before: float) -> None:
        """Drop items older than `before`."""
        for key, rows in list(self._lists.items()):
            if key[0] == namespace:
                rows[:] = [(t, item) for t, item in rows if t >= before]
                if not rows:
                    del self._lists[key]

    async def get(self, namespace: str, key: str) -> Any:
        """The value, or None."""
        raw = self._records.get(namespace, {}).get(key)
        return None if raw is None else json.loads(raw)

    async def put(self, namespace: str, key: str, value: Any) -> None:
        """Set a value; None deletes it."""
        records = self._records.setdefault(namespace, {})
        if value is None:
            records.pop(key, None)
        else:
            records[key] = json.dumps(value)

    async def scan(self, namespace: str) -> dict[str, Any]:
        """Every key and value in a namespace."""
        return {k: json.loads(v) for k, v in self._records.get(namespace, {}).items()}

    async def add(
        self,
        namespace: str,
        key: str,
        amount: float,
        *,
        limit: float | None = None,
        ttl: float | None = None,
    ) -> float | None:
        """Add to a counter unless it would pass `limit`."""
        return self._add(namespace, key, amount, limit, ttl)

    def _add(
        self, namespace: str, key: str, amount: float, limit: float | None, ttl: float | None
    ) -> float | None:
        counters = self._counters.setdefault(namespace, {})
        now = time.time()
        entry = counters.get(key)
        if entry is None or (entry[1] is not None and entry[1] <= now):
            value, expires = 0.0, (now + ttl if ttl is not None else None)
        else:
            value, expires = entry
        total = value + amount
        if limit is not None and total > limit:
            return None
        counters[key] = (total, expires)
        return total

    async def add_many(self, namespace: str, changes: Sequence[Change]) -> None:
        """Add to several counters (no await between them: all or none)."""
        for key, amount, ttl in changes:
            self._add(namespace, key, amount, None, ttl)

    async def totals(self, namespace: str, prefix: str = "") -> dict[str, float]:
        """Live counters whose keys start with `prefix`."""
        now = time.time()
        return {
            key: value
            for key, (value, expires) in self._counters.get(namespace, {}).items()
            if key.startswith(prefix) and (expires is None or expires > now)
        }

    def lock(
        self, name: str, *, timeout: float = 120.0, order: int | None = None
    ) -> AbstractAsyncContextManager[None]:
        """An in-process lock, first come first served: a memory store has one process."""
        return self._locks.hold(name)
