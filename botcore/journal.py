"""The update journal: every update taken from Telegram is kept in the store until it is handled.

Telegram forgets an update once it is confirmed (polling: the next getUpdates' offset; webhook: our
200), which happens before the update is handled. So an update is written here first, marked when
its turn begins, and deleted when it is over. After a kill -9 the journal holds exactly the updates
that were confirmed but not finished: at the next start an update whose turn never began is
handled as if it had just arrived, and the user of one that was cut off mid-turn is told so, in
their language. With a store that several instances share, each entry names the instance that
took it, and that instance holds a lease lock (`journal:<owner>`) for as long as it lives: only
the one instance that takes a dead owner's lease redoes its entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from telegram import Update

from botcore.store import Store

log = logging.getLogger(__name__)

NAMESPACE = "journal"
"""The store's records namespace: str(update_id) -> Entry.as_record()."""
LEASE = 30.0
"""Seconds after an instance died before another may take over its unfinished updates."""
TAKE_OVER_WAIT = 0.5
"""Seconds to try for a dead owner's lease (a live owner renews it: we give up and move on)."""


@dataclass
class Entry:
    """One journaled update: the update as JSON, who took it, whether its turn began."""

    update_id: int
    update: dict[str, Any]
    owner: str
    started: bool = False

    def as_record(self) -> dict[str, Any]:
        """The stored form (update_id is the key)."""
        return {"update": self.update, "owner": self.owner, "started": self.started}


class Journal:
    """Updates confirmed to Telegram but not yet handled, in the bot's store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.owner = secrets.token_hex(8)
        """This process's name in the entries it writes."""
        self.enabled = False
        """Set by `open`: only a running bot (polling or webhook) journals."""
        self._pending: dict[int, Entry] = {}
        self._lease = contextlib.AsyncExitStack()

    async def open(self) -> None:
        """Take this instance's lease (others see it alive) and begin journaling."""
        try:
            await self._lease.enter_async_context(
                self.store.lock(f"{NAMESPACE}:{self.owner}", timeout=LEASE)
            )
        except Exception as exc:  # the store is down: updates are handled, just not journaled
            log.warning("journal: the store is unavailable, updates are not journaled: %r", exc)
            return
        self.enabled = True

    async def close(self) -> None:
        """Let go of the lease; what is still pending stays in the store for the next start."""
        self.enabled = False
        await self._lease.aclose()

    async def record(self, update_id: int, update: dict[str, Any]) -> None:
        """Keep an update before Telegram is told it arrived (durable when this returns)."""
        if not self.enabled:
            return
        entry = self._pending[update_id] = Entry(update_id, update, self.owner)
        await self._write(entry)

    async def started(self, update_id: int) -> None:
        """The update's turn begins: from now on a kill cuts an answer off (redoing it would ask
        the question twice), so a restart tells the user instead."""
        entry = self._pending.get(update_id)
        if entry is not None and not entry.started:
            entry.started = True
            await self._write(entry)

    async def done(self, update_id: int) -> None:
        """The update is handled: forget it."""
        if self._pending.pop(update_id, None) is None:
            return
        try:
            await self.store.put(NAMESPACE, str(update_id), None)
        except Exception as exc:
            log.warning("journal: cannot forget update %s: %r", update_id, exc)

    async def _write(self, entry: Entry) -> None:
        try:
            await self.store.put(NAMESPACE, str(entry.update_id), entry.as_record())
        except Exception as exc:  # the update is still handled; only a kill now would lose it
            log.warning("journal: cannot keep update %s: %r", entry.update_id, exc)

    async def take_over(self) -> list[Entry]:
        """The entries of instances that are gone (a previous run of this one included), now
        this instance's, oldest first. An owner whose lease is still held is alive (or died
        less than LEASE seconds ago): its entries are left for a later call."""
        if not self.enabled:
            return []
        try:
            found = await self.store.scan(NAMESPACE)
        except Exception as exc:
            log.warning("journal: cannot read unfinished updates: %r", exc)
            return []
        owners: dict[str, list[Entry]] = {}
        for key, value in found.items():
            if not isinstance(value, dict) or not key.lstrip("-").isdigit():
                continue
            owner = str(value.get("owner", ""))
            if owner == self.owner or int(key) in self._pending:
                continue
            entry = Entry(
                int(key), dict(value.get("update") or {}), owner, bool(value.get("started"))
            )
            owners.setdefault(owner, []).append(entry)
        taken: list[Entry] = []
        for owner, entries in owners.items():
            async with self._lease_of(owner) as ours:
                if not ours:
                    continue
                for entry in entries:
                    # Read again under the lease: a live instance may have taken the update
                    # meanwhile (Telegram redelivered it), and then it is that instance's.
                    current = await self.store.get(NAMESPACE, str(entry.update_id))
                    if not isinstance(current, dict) or current.get("owner") != owner:
                        continue
                    entry.owner = self.owner
                    self._pending[entry.update_id] = entry
                    await self._write(entry)
                    taken.append(entry)
        return sorted(taken, key=lambda entry: entry.update_id)

    @contextlib.asynccontextmanager
    async def _lease_of(self, owner: str) -> AsyncIterator[bool]:
        """Hold a dead owner's lease for the block (True), or False if it is still held."""
        lock = self.store.lock(f"{NAMESPACE}:{owner}", timeout=LEASE)
        try:
            await asyncio.wait_for(lock.__aenter__(), TAKE_OVER_WAIT)
        except TimeoutError:
            yield False
            return
        except Exception as exc:
            log.warning("journal: cannot take over unfinished updates: %r", exc)
            yield False
            return
        try:
            yield True
        finally:
            await lock.__aexit__(None, None, None)


class JournalQueue(asyncio.Queue[object]):
    """python-telegram-bot's update queue, journaling each update as it is put: the updater puts
    a batch before its next getUpdates confirms it, and the webhook awaits the put before its 200.
    Updates taken over from the journal are not queued twice when Telegram sends them again
    (what a killed process had not yet confirmed); in polling, neither is anything up to the
    newest of them (`through`): that batch was confirmed by nobody, finished or not."""

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal
        self.replayed: set[int] = set()
        self.through = -1

    async def put(self, item: object) -> None:
        """Journal an update, then queue it (anything else, e.g. the stop signal, is queued)."""
        if isinstance(item, Update):
            if item.update_id in self.replayed or item.update_id <= self.through:
                log.info("update %s: already taken from the journal, skipped", item.update_id)
                return
            await self.journal.record(item.update_id, item.to_dict())
        await super().put(item)
