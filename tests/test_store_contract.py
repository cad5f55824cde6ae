"""The Store contract: every backend passes the same suite (botcore.store.Store)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from botcore_history import CURRENT
from botcore_history.saved import CHATS
from botcore_shared_stores.postgres import PostgresStore
from botcore_shared_stores.redis import RedisStore
from botcore_shared_stores.testing import wipe

from botcore.config import Config, StartupError, validate
from botcore.journal import Journal
from botcore.runtime import Runtime
from botcore.store import SCHEMA_VERSION, NewerSchema, Store
from botcore.stores.memory import MemoryStore
from botcore.stores.sqlite import SQLiteStore, _execute
from botcore.testing.stores import server_store

N = "chats"
"""The namespace of the lists these tests use."""


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An open, empty store of each backend (postgres and redis: the test servers)."""
    backend: Store
    if request.param == "memory":
        backend = MemoryStore()
    elif request.param == "sqlite":
        backend = SQLiteStore(tmp_path / "s.db")
    else:
        backend = server_store(request.param)
    await backend.open()
    await wipe(backend)
    yield backend
    await backend.close()


async def test_messages_come_back_oldest_first_within_the_limit(store: Store) -> None:
    await store.list_push(N, "c", [{"role": "user", "content": "one"}], keep=10)
    await store.list_push(
        N,
        "c",
        [{"role": "assistant", "content": "two"}, {"role": "user", "content": "три"}],
        keep=10,
    )
    assert [m["content"] for m in await store.list_read(N, "c", limit=10)] == ["one", "two", "три"]
    assert [m["content"] for m in await store.list_read(N, "c", limit=2)] == ["two", "три"]
    assert await store.list_read(N, "other", limit=10) == []


async def test_append_keeps_the_newest(store: Store) -> None:
    for i in range(5):
        await store.list_push(N, "c", [{"role": "user", "content": str(i)}], keep=3)
    assert [m["content"] for m in await store.list_read(N, "c", limit=100)] == ["2", "3", "4"]


async def test_messages_are_values_not_shared_objects(store: Store) -> None:
    message = {"role": "user", "content": "x", "extra": {"n": 1}}
    await store.list_push(N, "c", [message], keep=10)
    message["content"] = "changed"
    loaded = await store.list_read(N, "c", limit=10)
    loaded[0]["extra"]["n"] = 2
    assert await store.list_read(N, "c", limit=10) == [
        {"role": "user", "content": "x", "extra": {"n": 1}}
    ]


async def test_clear_and_expire(store: Store) -> None:
    await store.list_push(N, "a", [{"role": "user", "content": "a"}], keep=10)
    await store.list_push(N, "b", [{"role": "user", "content": "b"}], keep=10)
    await store.list_set(N, "a", [])
    assert await store.list_read(N, "a", limit=10) == []
    assert len(await store.list_read(N, "b", limit=10)) == 1
    assert await store.list_read(N, "b", limit=10, since=2**40) == []
    await store.list_expire(N, 2**40)  # everything is older than the far future
    assert await store.list_read(N, "b", limit=10) == []


async def test_expire_forgets_exactly_what_is_older(store: Store) -> None:
    for n in range(20):
        await store.list_push(N, f"c{n % 3}", [{"role": "user", "content": str(n)}], keep=100)
    await asyncio.sleep(0.02)
    middle = time.time()
    await asyncio.sleep(0.02)
    for n in range(20, 25):
        await store.list_push(N, f"c{n % 3}", [{"role": "user", "content": str(n)}], keep=100)
    await store.list_set(N, "c1", [])  # a gap among the ids
    await store.list_expire(N, middle)
    kept = [
        m["content"] for c in ("c0", "c1", "c2") for m in await store.list_read(N, c, limit=100)
    ]
    assert sorted(kept, key=int) == ["20", "21", "23", "24"]
    await store.list_expire(N, middle)  # nothing more to do
    await store.list_expire(N, 0)
    assert len(await store.list_read(N, "c0", limit=100)) == 2


async def test_replace_is_the_whole_conversation(store: Store) -> None:
    await store.list_push(N, "c", [{"role": "user", "content": str(i)} for i in range(4)], keep=10)
    await store.list_push(N, "d", [{"role": "user", "content": "d"}], keep=10)
    await store.list_set(
        N, "c", [{"role": "user", "content": "0"}, {"role": "user", "content": "1"}]
    )
    assert [m["content"] for m in await store.list_read(N, "c", limit=10)] == ["0", "1"]
    await store.list_push(N, "c", [{"role": "user", "content": "2"}], keep=10)
    assert [m["content"] for m in await store.list_read(N, "c", limit=10)] == ["0", "1", "2"]
    await store.list_set(N, "c", [])
    assert await store.list_read(N, "c", limit=10) == []
    assert len(await store.list_read(N, "d", limit=10)) == 1


async def test_move_renames_a_conversation_and_those_under_it(store: Store) -> None:
    def said(*texts: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": t} for t in texts]

    await store.list_push(N, "chat:-5", said("a", "b"), keep=10)
    await store.list_push(N, "chat:-5:user:7", said("u"), keep=10)
    await store.list_push(N, "chat:-50", said("other group"), keep=10)
    await store.list_push(N, "chat:-100", said("already there"), keep=10)
    await store.list_rename(N, "chat:-5", "chat:-100")
    assert await store.list_read(N, "chat:-5", limit=10) == []
    assert await store.list_read(N, "chat:-5:user:7", limit=10) == []
    assert [m["content"] for m in await store.list_read(N, "chat:-100", limit=10)] == [
        "a",
        "b",
        "already there",  # newer than the moved ones
    ]
    assert [m["content"] for m in await store.list_read(N, "chat:-100:user:7", limit=10)] == ["u"]
    assert [m["content"] for m in await store.list_read(N, "chat:-50", limit=10)] == ["other group"]
    await store.list_rename(
        N, "chat:-5", "chat:-100"
    )  # again: nothing left to move, nothing changes
    assert len(await store.list_read(N, "chat:-100", limit=10)) == 3
    await store.list_push(N, "chat:-100", said("c"), keep=10)
    await store.list_expire(N, 0)
    assert [m["content"] for m in await store.list_read(N, "chat:-100", limit=2)] == [
        "already there",
        "c",
    ]


def group_turn(chat_id: int, update_id: int = 1) -> Any:
    """The little of a Turn the history reads: a group message from user 7."""
    return SimpleNamespace(
        chat_id=chat_id, topic_id=None, is_private=False, sender_id=7, update_id=update_id, extra={}
    )


async def test_conversations_on_the_store_follow_a_group_and_expire(store: Store) -> None:
    """The history plugin's conversations, saved ones and summaries, on each backend: a group
    that became a supergroup takes them all along; retention forgets what is older."""
    from botcore_history import History, Settings

    history = History(store, lambda: Settings(max_age_days=1))
    turn = group_turn(-5)
    await history.append(turn, {"role": "user", "content": "old plan"})
    await history.compact(turn, "earlier: a plan was made", keep=1)
    turn.extra[CURRENT] = (history.scope(turn), f"{history.scope(turn)}:saved:1")
    await store.put(CHATS, "chat:-5", {"current": 1, "chats": [{"id": 0}, {"id": 1}]})
    await history.append(turn, {"role": "user", "content": "new plan"})
    await history.move_chat(-5, -100)
    moved = group_turn(-100)
    assert await history.conversation(moved) == "chat:-100:saved:1"
    assert [m["content"] for m in await history.load(moved)] == ["new plan"]
    assert await store.list_read("history", "chat:-5:saved:1", limit=10) == []
    old = group_turn(-100, update_id=2)
    old.extra[CURRENT] = ("chat:-100", "chat:-100")
    assert [m["content"] for m in await history.load(old)] == ["old plan"]
    assert await history.summary(old) == "earlier: a plan was made"
    await history.clear(old)  # the summary goes with it
    assert await history.summary(old) is None
    await store.list_push("history", "chat:-100", [{"role": "user", "content": "x"}], keep=5)
    assert await store.get(CHATS, "chat:-5") is None
    await store.list_expire("history", 2**40)
    assert await history.load(group_turn(-100, update_id=3)) == []


async def test_records(store: Store) -> None:
    assert await store.get("settings", "42") is None
    await store.put("settings", "42", {"voice": True, "persona": "пират"})
    await store.put("settings", "43", [1, 2])
    await store.put("other", "42", "x")
    assert await store.get("settings", "42") == {"voice": True, "persona": "пират"}
    await store.put("settings", "42", {"voice": False})
    assert await store.scan("settings") == {"42": {"voice": False}, "43": [1, 2]}
    await store.put("settings", "43", None)
    assert await store.scan("settings") == {"42": {"voice": False}}
    assert await store.scan("empty") == {}


async def test_counters_add_and_refuse_past_the_limit(store: Store) -> None:
    assert await store.add("usage", "u1:day", 2.5) == 2.5
    assert await store.add("usage", "u1:day", 1) == 3.5
    assert await store.add("usage", "u1:day", 1, limit=4) is None  # 4.5 > 4: nothing changes
    assert await store.add("usage", "u1:day", 0.5, limit=4) == 4.0
    await store.add("usage", "u2:day", 7)
    await store.add("usage", "x", 1)
    assert await store.totals("usage", "u") == {"u1:day": 4.0, "u2:day": 7.0}
    assert await store.totals("usage") == {"u1:day": 4.0, "u2:day": 7.0, "x": 1.0}


async def test_counters_expire_with_their_window(store: Store) -> None:
    await store.add("usage", "short", 5, ttl=0.05)
    await store.add("usage", "long", 5, ttl=3600)
    await asyncio.sleep(0.1)
    assert await store.totals("usage") == {"long": 5.0}
    assert await store.add("usage", "short", 1, ttl=0.05) == 1.0  # a new window starts at zero


async def test_add_many_adds_to_several_counters_like_add(store: Store) -> None:
    await store.add("usage", "a", 1)
    await store.add_many("usage", [("a", 2.5, None), ("b", 4, 3600), ("gone", 1, 0.05)])
    await store.add_many("usage", [])
    assert await store.totals("usage") == {"a": 3.5, "b": 4.0, "gone": 1.0}
    await asyncio.sleep(0.1)
    await store.add_many("usage", [("b", -1, 3600), ("gone", 2, 3600)])  # a new window for gone
    assert await store.totals("usage") == {"a": 3.5, "b": 3.0, "gone": 2.0}
    assert await store.add("usage", "b", 0) == 3.0
    await asyncio.gather(
        *(store.add_many("c", [("x", 1, None), ("y", 2, None)]) for _ in range(20))
    )
    assert await store.totals("c") == {"x": 20.0, "y": 40.0}


async def test_broadcast_reaches_every_listener_of_this_process(store: Store) -> None:
    heard: list[tuple[str, object]] = []
    got = asyncio.Event()

    def first(message: dict[str, object]) -> None:
        heard.append(("first", message))

    def broken(message: dict[str, object]) -> None:
        raise RuntimeError("a listener that fails does not stop the others")

    def last(message: dict[str, object]) -> None:
        heard.append(("last", message))
        got.set()

    for callback in (first, broken, last):
        await store.listen(callback)
    await store.broadcast({"kind": "cancel", "chat": -100, "text": "Привет"})
    await asyncio.wait_for(got.wait(), 5)
    message = {"kind": "cancel", "chat": -100, "text": "Привет"}
    assert heard == [("first", message), ("last", message)]


async def test_concurrent_reservations_never_overrun_the_limit(store: Store) -> None:
    results = await asyncio.gather(*(store.add("b", "k", 1, limit=10) for _ in range(30)))
    assert sum(r is not None for r in results) == 10
    assert await store.totals("b") == {"k": 10.0}


async def test_lock_serializes_holders_of_one_name(store: Store) -> None:
    events: list[str] = []

    async def hold(name: str, tag: str) -> None:
        async with store.lock(name):
            events.append(f"{tag} in")
            await asyncio.sleep(0.02)
            events.append(f"{tag} out")

    await asyncio.gather(hold("chat:1", "a"), hold("chat:1", "b"))
    assert events in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    events.clear()
    await asyncio.gather(hold("chat:1", "a"), hold("chat:2", "b"))
    assert events[:2] in (["a in", "b in"], ["b in", "a in"])  # other names do not wait


async def recorded(store: Store) -> int | None:
    """The schema version the store holds (None: none recorded)."""
    if isinstance(store, MemoryStore):
        return store.meta.get("schema_version")
    if isinstance(store, SQLiteStore):
        with contextlib.closing(sqlite3.connect(store.path)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return None if row is None else int(row[0])
    if isinstance(store, PostgresStore):
        found = await store.pool.fetchval(
            "SELECT value FROM botcore_meta WHERE key = 'schema_version'"
        )
        return None if found is None else int(found)
    assert isinstance(store, RedisStore)
    found = await store.redis.hget("botcore:meta", "schema_version")
    return None if found is None else int(found)


async def stamp(store: Store, version: int | None) -> None:
    """Record `version` as the store's schema (None: none), as another botcore would have."""
    if isinstance(store, MemoryStore):
        store.meta.pop("schema_version", None)
        if version is not None:
            store.meta["schema_version"] = version
    elif isinstance(store, SQLiteStore):
        with contextlib.closing(sqlite3.connect(store.path)) as db, db:
            db.execute("DELETE FROM meta")
            if version is not None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
    elif isinstance(store, PostgresStore):
        await store.pool.execute("DELETE FROM botcore_meta")
        if version is not None:
            await store.pool.execute(
                "INSERT INTO botcore_meta VALUES ('schema_version', $1)", str(version)
            )
    else:
        assert isinstance(store, RedisStore)
        await store.redis.delete("botcore:meta")
        if version is not None:
            await store.redis.hset("botcore:meta", "schema_version", str(version))


def another_client(store: Store) -> Store:
    """A new, unopened store on the same data (a memory store is its own)."""
    if isinstance(store, MemoryStore):
        return store
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path)
    return server_store("postgres" if isinstance(store, PostgresStore) else "redis")


async def test_the_schema_version_is_recorded_and_a_newer_one_is_refused(store: Store) -> None:
    await store.put("settings", "42", "kept")  # the SQLite file exists once something is kept
    assert await recorded(store) == SCHEMA_VERSION
    try:
        await stamp(store, None)  # a store from before versions were recorded
        again = another_client(store)
        await again.open()
        await again.close()
        assert await recorded(store) == SCHEMA_VERSION
        await stamp(store, 3)
        again = another_client(store)
        with pytest.raises(NewerSchema) as refused:
            await again.open()
        await again.close()
        assert str(refused.value) == (
            f"written by a newer botcore (schema 3; this one reads {SCHEMA_VERSION}): upgrade botcore"
        )
        assert await recorded(store) == 3  # left as the newer botcore wrote it
        assert await store.get("settings", "42") == "kept"
    finally:
        await stamp(store, SCHEMA_VERSION)  # the test servers are shared by every test


async def write_schema_1(store: Store, conversations: dict[str, list[str]]) -> None:
    """Lay out `store` as botcore with schema 1 did: conversations of user messages, each a
    second apart, in order."""
    messages = [
        (key, 1000.0 + n, json.dumps({"role": "user", "content": text}))
        for n, (key, text) in enumerate((k, t) for k, ts in conversations.items() for t in ts)
    ]
    if isinstance(store, SQLiteStore):
        with contextlib.closing(sqlite3.connect(store.path)) as db, db:
            db.execute("DROP TABLE lists")
            db.execute(
                "CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation TEXT NOT NULL, "
                "created REAL NOT NULL, message TEXT NOT NULL)"
            )
            db.execute("CREATE INDEX messages_by_age ON messages (created)")
            db.executemany(
                "INSERT INTO messages (conversation, created, message) VALUES (?, ?, ?)", messages
            )
    elif isinstance(store, PostgresStore):
        await store.pool.execute("DROP TABLE botcore_lists")
        await store.pool.execute(
            "CREATE TABLE botcore_messages (id BIGSERIAL PRIMARY KEY, conversation TEXT NOT NULL, "
            "created DOUBLE PRECISION NOT NULL, message TEXT NOT NULL);"
            "CREATE INDEX botcore_messages_by_conversation ON botcore_messages (conversation, id);"
            "CREATE INDEX botcore_messages_by_age ON botcore_messages (created)"
        )
        await store.pool.executemany(
            "INSERT INTO botcore_messages (conversation, created, message) VALUES ($1, $2, $3)",
            messages,
        )
    else:
        assert isinstance(store, RedisStore)
        for key, created, message in messages:
            await store.redis.rpush(f"botcore:m:{key}", f"{created:.6f} {message}")
            await store.redis.sadd("botcore:conversations", key)
    await stamp(store, 1)


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
async def test_a_schema_1_store_opens_with_its_conversations_as_lists(
    backend: str, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "old.db") if backend == "sqlite" else server_store(backend)
    await store.open()
    await wipe(store)
    await store.put("settings", "42", "kept")
    old = {"chat:5": ["one", "two"], "chat:-7:user:3": ["три"]}
    await write_schema_1(store, old)
    await store.close()
    upgraded = another_client(store)
    try:
        await upgraded.open()
        assert await recorded(upgraded) == SCHEMA_VERSION
        for key, texts in old.items():
            found = await upgraded.list_read("history", key, limit=10)
            assert [m["content"] for m in found] == texts
        assert await upgraded.list_read("history", "chat:5", limit=10, since=1001.0) == [
            {"role": "user", "content": "two"}  # the times came along
        ]
        await upgraded.list_push("history", "chat:5", [{"role": "user", "content": "3"}], keep=3)
        found = await upgraded.list_read("history", "chat:5", limit=10)
        assert [m["content"] for m in found] == ["one", "two", "3"]  # after the old ones
        assert await upgraded.get("settings", "42") == "kept"
        await upgraded.close()
        again = another_client(store)  # a second open has nothing left to migrate
        await again.open()
        assert len(await again.list_read("history", "chat:5", limit=10)) == 3
        await again.close()
    finally:
        await upgraded.close()


async def test_a_bot_on_a_newer_store_does_not_start_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    store = SQLiteStore(path)
    await store.put("settings", "42", "kept")
    await store.close()
    await stamp(store, SCHEMA_VERSION + 1)
    config = validate(
        Config, {"bot": {"token": "1:A"}, "store": {"backend": "sqlite", "path": str(path)}}
    )
    app = Runtime(config)
    with pytest.raises(StartupError) as refused:
        await app.startup()
    await app.shutdown()
    assert str(refused.value) == (
        f"store: written by a newer botcore (schema {SCHEMA_VERSION + 1}; "
        f"this one reads {SCHEMA_VERSION}): upgrade botcore"
    )


async def test_sqlite_opens_once_however_many_first_uses_arrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[SQLiteStore] = []
    real = SQLiteStore._open

    def counted(self: SQLiteStore) -> None:
        opened.append(self)
        real(self)

    monkeypatch.setattr(SQLiteStore, "_open", counted)
    store = SQLiteStore(tmp_path / "new.db")
    await store.open()  # a new file is made on first use
    try:
        await asyncio.gather(
            *(
                store.list_push(N, f"c{i}", [{"role": "user", "content": "hi"}], keep=5)
                for i in range(20)
            )
        )
    finally:
        await store.close()
    assert len(opened) == 1


async def test_the_update_journal_hands_a_dead_instances_updates_to_exactly_one(
    store: Store,
) -> None:
    """botcore.journal on every backend: an owner's entries are left alone while it lives, and
    once it is gone exactly one of the instances that try takes each over, with what it knew."""
    alive = Journal(store)
    await alive.open()
    await alive.record(7, {"update_id": 7, "message": {"text": "first"}})
    await alive.record(8, {"update_id": 8, "message": {"text": "second"}})
    await alive.record(9, {"update_id": 9})
    await alive.started(7)
    await alive.done(9)
    others = [Journal(store) for _ in range(3)]
    for journal in others:
        await journal.open()
    assert await others[0].take_over() == []  # its owner holds its lease: alive
    await alive.close()  # as a kill -9 leaves it once the lease has lapsed
    taken = await asyncio.gather(*(journal.take_over() for journal in others))
    winners = [entries for entries in taken if entries]
    assert len(winners) == 1
    assert [(e.update_id, e.started, e.update["message"]) for e in winners[0]] == [
        (7, True, {"text": "first"}),
        (8, False, {"text": "second"}),
    ]
    for journal in others:
        assert await journal.take_over() == []  # now a live instance's
    winner = others[[bool(entries) for entries in taken].index(True)]
    for entry in winners[0]:
        await winner.done(entry.update_id)
    assert await store.scan("journal") == {}
    for journal in others:
        await journal.close()


async def test_sqlite_writes_asked_together_share_one_commit_and_fail_alone(
    tmp_path: Path,
) -> None:
    """A burst's writes (a turn's journal, history, draft and usage, times many turns) cost one
    commit, not one each; each is in a savepoint of its own, so one that fails is the only one
    lost, and every other is durable once its call returns."""
    path = tmp_path / "burst.db"
    store = SQLiteStore(path)
    await store.put("setup", "made", True)
    assert store._db is not None
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    bad = store._write(_execute, "INSERT INTO nowhere VALUES (1)", alone=True)
    results = await asyncio.gather(
        *(store.put("records", f"k{i}", {"n": i}) for i in range(10)),
        *(store.list_push(N, f"c{i}", [{"role": "user", "content": i}], keep=5) for i in range(5)),
        store.add("counters", "capped", 2, limit=3),
        bad,
        store.add("counters", "capped", 2, limit=3),  # past the limit: refused, not failed
        store.add_many("counters", [("a", 1, None), ("b", 2, 60)]),
        store.list_set(N, "c0", [{"role": "user", "content": "replaced"}]),
        return_exceptions=True,
    )
    await store.close()
    assert isinstance(results[16], sqlite3.OperationalError)
    assert results[15] == 2.0 and results[17] is None
    assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    again = SQLiteStore(path)
    try:
        assert await again.scan("records") == {f"k{i}": {"n": i} for i in range(10)}
        assert await again.list_read(N, "c0", limit=5) == [{"role": "user", "content": "replaced"}]
        assert await again.list_read(N, "c4", limit=5) == [{"role": "user", "content": 4}]
        assert await again.totals("counters") == {"a": 1.0, "b": 2.0, "capped": 2.0}
    finally:
        await again.close()


async def test_sqlite_writes_that_find_the_file_locked_wait_for_it(tmp_path: Path) -> None:
    """Another connection holds the write lock (a checkpoint, or a second process): the writes
    wait for it on the store's thread, alone or together, and none is lost."""
    path = tmp_path / "locked.db"
    store = SQLiteStore(path)
    await store.put("setup", "made", True)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        alone = asyncio.ensure_future(store.put("records", "alone", 1))
        together = asyncio.gather(*(store.add("counters", "n", 1) for _ in range(5)))
        await asyncio.sleep(0.3)
        assert not alone.done() and not together.done()  # waiting, not failed
        other.execute("COMMIT")
        await asyncio.wait_for(asyncio.gather(alone, together), 10)
        assert await store.get("records", "alone") == 1
        assert await store.totals("counters") == {"n": 5.0}
    finally:
        other.close()
        await store.close()
