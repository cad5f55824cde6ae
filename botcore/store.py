"""Where botcore keeps state: small JSON records, lists, counters, signals and cross-process locks.

One `Store` per bot, chosen by `[store] backend` in bot.toml: SQLite by default, in the testing kit
too (a file in each test's own working directory, unless the test passes `store=`) and in the
console (which uses bot.toml's `[store]`); `memory` only when asked for. Plugins reach it as
`app.store` (docs/plugin-guide.md shows how). The store knows nothing of chats: the history plugin
keeps conversations in its lists and offers them to the chat plugin as a turn-based `HistoryStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, cast

if TYPE_CHECKING:
    from botcore.config import StoreSettings
    from botcore.turn import Turn

log = logging.getLogger(__name__)

ChatMessage: TypeAlias = dict[str, Any]
"""One message in OpenAI's chat format: {"role": "user" | "assistant" | "tool", "content": ...}."""
Signal: TypeAlias = dict[str, Any]
"""A message for `Store.broadcast`: a JSON object of a few hundred bytes at most."""
Change: TypeAlias = tuple[str, float, "float | None"]
"""A counter change for `Store.add_many`: (key, amount, ttl), as `add`'s arguments."""
SCHEMA_VERSION = 2
"""The layout of what this botcore keeps in a store. Each backend records it at `open` (a store
from before versions were kept is taken to be 1), so a later release knows what to migrate from.
2: conversations (1 kept them as such) became lists in the namespace `OLD_CONVERSATIONS`."""
OLD_CONVERSATIONS = "history"
"""The list namespace a schema-1 store's conversations move to at open: the history plugin's, which
was their only writer."""


class NewerSchema(Exception):
    """The store was written by a newer botcore, whose layout this one cannot read safely."""


def check_schema(found: int) -> None:
    """Refuse a store whose recorded schema version is newer than this botcore's."""
    if found > SCHEMA_VERSION:
        raise NewerSchema(
            f"written by a newer botcore (schema {found}; this one reads {SCHEMA_VERSION}): "
            "upgrade botcore"
        )


class Store(Protocol):
    """The state of one bot (or of several instances of it, with a shared backend).

    Keys are plain strings the caller chooses; values are JSON-serializable and come back as JSON
    gives them (a tuple as a list, dict keys as strings). Every method is safe to call from many
    tasks at once, and every write is durable when it returns.
    """

    shared: bool
    """True when several bot processes may use the store at once (PostgreSQL, Redis)."""

    async def open(self) -> None:
        """Connect (or prepare to); called once at start-up, before any plugin's `startup`.
        Records SCHEMA_VERSION, or raises NewerSchema for a store a newer botcore wrote."""
        ...

    async def close(self) -> None:
        """Release connections; called once on the way out."""
        ...

    # Lists: per namespace and key, an append-only list of JSON items, each stamped with the time
    # it was added (the history plugin keeps conversations in them). Keys may form a hierarchy
    # with ":" (see `list_rename`).

    async def list_read(
        self, namespace: str, key: str, *, limit: int, since: float = 0.0
    ) -> list[Any]:
        """The newest `limit` items added at or after unix time `since`, oldest first."""
        ...

    async def list_push(self, namespace: str, key: str, items: Sequence[Any], *, keep: int) -> None:
        """Add items at the end (all or none), then drop all but the newest `keep`."""
        ...

    async def list_set(self, namespace: str, key: str, items: Sequence[Any]) -> None:
        """Make the list exactly `items`, all or nothing; [] deletes it."""
        ...

    async def list_expire(self, namespace: str, before: float) -> None:
        """Drop every item of the namespace's lists added before unix time `before`."""
        ...

    async def list_rename(self, namespace: str, old: str, new: str) -> None:
        """Give every list keyed `old`, or `old` + ":" + more, the key with `new` in place of
        `old`. Items the new key already holds come after the moved ones, which are older."""
        ...

    # Records: small JSON values by namespace and key (per-user settings, admin overrides).

    async def get(self, namespace: str, key: str) -> Any:
        """The value, or None if there is none."""
        ...

    async def put(self, namespace: str, key: str, value: Any) -> None:
        """Set a value; None deletes it."""
        ...

    async def scan(self, namespace: str) -> dict[str, Any]:
        """Every key and value in a namespace."""
        ...

    # Counters: numbers that only grow, for usage and budgets.

    async def add(
        self,
        namespace: str,
        key: str,
        amount: float,
        *,
        limit: float | None = None,
        ttl: float | None = None,
    ) -> float | None:
        """Atomically add `amount` and return the new total; with `limit`, a total that would
        exceed it changes nothing and returns None (a budget reservation). A counter created
        with `ttl` disappears `ttl` seconds after its creation (a daily or monthly window)."""
        ...

    async def add_many(self, namespace: str, changes: Sequence[Change]) -> None:
        """`add` without a limit for several counters, all or none, in one round trip: a turn's
        usage settles with one write instead of a dozen."""
        ...

    async def totals(self, namespace: str, prefix: str = "") -> dict[str, float]:
        """The live counters of a namespace whose keys start with `prefix`."""
        ...

    # Signals: small messages to every process that shares the store (a /cancel that reaches one
    # instance stops the turn another is running).

    async def broadcast(self, message: Signal) -> None:
        """Send a small JSON object to every `listen` callback of every process on this store,
        this one's included. Best effort: a process not listening at that moment misses it."""
        ...

    async def listen(self, callback: Callable[[Signal], None]) -> None:
        """Call `callback` with every message broadcast from now on, until `close`."""
        ...

    # Locks: one holder at a time per name, across every process that shares the store.

    def lock(
        self, name: str, *, timeout: float = 120.0, order: int | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Hold `name` for the block; a holder that dies releases it after `timeout` seconds.

        Waiters that pass `order` (an update id) get the lock smallest first, so one chat's
        updates waiting at several processes are still handled in order."""
        ...


class HistoryStore(Protocol):
    """Where a conversation's messages live. The store decides what "conversation" means for a turn
    (per user in private chats, per chat or per user in groups, which of a user's saved ones), so
    its users never compute keys."""

    async def conversation(self, turn: Turn) -> str:
        """The key of the turn's conversation, for plugins that keep things beside it (the
        documents a user sent); it changes when the conversation does (/new, /chats)."""
        ...

    async def load(self, turn: Turn, *, limit: int | None = None) -> list[ChatMessage]:
        """The conversation's messages, oldest first: the newest `limit` of them if given (the
        chat plugin sends only that many, and reading the rest would be wasted)."""
        ...

    async def append(self, turn: Turn, *messages: ChatMessage) -> None:
        """Add messages at the end; durable when this returns."""
        ...

    async def draft(self, turn: Turn, content: str | None) -> None:
        """The turn's answer as far as the user has seen it, kept until `append` stores it (a
        kill -9 mid-answer loses none of it); None drops it (the user stopped the answer)."""
        ...

    async def summary(self, turn: Turn) -> str | None:
        """The summary kept in place of the conversation's older messages, if any."""
        ...

    async def compact(self, turn: Turn, summary: str, *, keep: int) -> None:
        """Keep `summary` in place of every message but the newest `keep` (the conversation
        outgrew what the model is sent); `clear` forgets it with the rest."""
        ...

    async def clear(self, turn: Turn) -> None:
        """Forget the conversation."""
        ...

    async def rewind(self, turn: Turn) -> ChatMessage | None:
        """Remove the last user message and everything after it, and return that message (None if
        there is none): /retry asks the model again. Raises UserError (removing nothing) when the
        turn's sender may not take it back: someone else's, in a conversation several share."""
        ...


class LocalLocks:
    """Named asyncio locks for a store used by one process; an unused name costs nothing."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """Hold the lock called `name` for the block."""
        entry = self._locks.get(name)
        if entry is None:
            entry = self._locks[name] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[name]


class LocalSignals:
    """`broadcast` and `listen` of a store that one process uses (a base class of the SQLite and
    memory stores): every message goes straight to this process's callbacks."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[Signal], None]] = []

    async def broadcast(self, message: Signal) -> None:
        """Call every listener with `message`."""
        hand_on(self._listeners, message)

    async def listen(self, callback: Callable[[Signal], None]) -> None:
        """Add a listener."""
        self._listeners.append(callback)


def hand_on(callbacks: Sequence[Callable[[Signal], None]], message: Signal) -> None:
    """Hand a received signal to each listener; one that raises is logged, the rest still run."""
    for callback in callbacks:
        try:
            callback(message)
        except Exception:
            log.exception("store: a signal listener failed")


BUILT_IN = ("sqlite", "memory")
"""The backends of the core itself; any other comes from the `botcore.stores` group."""
STORES_GROUP = "botcore.stores"
"""The entry point group of store backends: a name for `[store] backend` -> a factory that takes
`[store] url` and returns an unopened Store (botcore's own: postgres, redis)."""


def make_store(settings: StoreSettings) -> Store:
    """The backend `[store]` names, not yet opened: sqlite and memory are the core's own, any
    other comes from the `botcore.stores` entry point group."""
    if settings.backend == "memory":
        from botcore.stores.memory import MemoryStore

        return MemoryStore()
    if settings.backend == "sqlite":
        from botcore.stores.sqlite import SQLiteStore

        return SQLiteStore(settings.path)
    from botcore.config import ConfigError

    assert settings.url is not None  # the config requires it, and a backend that is installed
    factory = store_backends()[settings.backend]
    try:
        return cast("Store", factory.load()(settings.url.get_secret_value()))
    except ConfigError:  # the backend's own message (botcore's: the extra to install)
        raise
    except Exception as exc:  # a broken third-party backend: one line, naming it
        raise ConfigError(
            f'store: backend "{settings.backend}" failed to load: {type(exc).__name__}: {exc}'
        ) from None


def store_backends() -> dict[str, metadata.EntryPoint]:
    """The installed backends besides sqlite and memory, by name."""
    return {ep.name: ep for ep in metadata.entry_points(group=STORES_GROUP)}


def describe_store(settings: StoreSettings) -> str:
    """The backend in use and where it comes from, for `botcore check` and `botcore plugins`."""
    if settings.backend in BUILT_IN:
        return f"{settings.backend} (built-in)"
    ep = store_backends()[settings.backend]
    dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "unknown package"
    return f"{settings.backend} ({ep.value}, from {dist})"
