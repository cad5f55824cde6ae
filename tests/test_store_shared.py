"""PostgreSQL and Redis stores as several processes see them: two clients on one server."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from botcore_shared_stores.postgres import PostgresStore
from botcore_shared_stores.redis import RedisStore
from botcore_shared_stores.server import StoreUnavailable
from botcore_shared_stores.testing import waiting, wipe

from botcore.config import ConfigError, load_config
from botcore.store import Store
from botcore.testing.harness import BotHarness
from botcore.testing.stores import SERVERS, Server, server_store, server_url


@pytest.fixture(params=SERVERS)
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Store, Store]]:
    """Two independent clients (as two bot processes would have) of one empty server."""
    a, b = server_store(request.param), server_store(request.param)
    await a.open()
    await b.open()
    await wipe(a)
    yield a, b
    await a.close()
    await b.close()


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (10 s at most) for an async condition to hold."""
    for _ in range(1000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_a_lock_held_by_one_client_blocks_the_other(pair: tuple[Store, Store]) -> None:
    a, b = pair
    events: list[str] = []

    async def take(store: Store, tag: str) -> None:
        async with store.lock("chat:1"):
            events.append(f"{tag} in")
            await asyncio.sleep(0.05)
            events.append(f"{tag} out")

    async with a.lock("chat:1"):
        other = asyncio.create_task(take(b, "b"))
        await asyncio.sleep(0.3)  # b polls meanwhile, and must not get in
        assert events == []
        events.append("a out")
    await asyncio.wait_for(other, 10)
    assert events == ["a out", "b in", "b out"]
    async with a.lock("chat:2"), b.lock("chat:3"):  # other names never wait
        pass


async def test_concurrent_reservations_from_two_clients_never_overrun(
    pair: tuple[Store, Store],
) -> None:
    a, b = pair
    results = await asyncio.gather(
        *(store.add("budget", "u1", 1, limit=25, ttl=3600) for store in [a, b] * 40)
    )
    assert sum(r is not None for r in results) == 25
    assert sorted(r for r in results if r is not None) == [float(i) for i in range(1, 26)]
    assert await b.totals("budget") == {"u1": 25.0}


async def test_a_dead_holder_releases_after_its_timeout(pair: tuple[Store, Store]) -> None:
    a, b = pair
    assert isinstance(a, PostgresStore | RedisStore)
    # What a process killed while holding the lock leaves: a lease nobody renews or releases.
    assert await a.try_acquire("chat:1", "dead-process", None, 0.5)
    async with asyncio.timeout(10), b.lock("chat:1"):
        pass


async def test_a_lease_is_renewed_while_its_holder_lives(pair: tuple[Store, Store]) -> None:
    a, b = pair
    events: list[str] = []

    async def wait_for_it() -> None:
        async with b.lock("chat:1", timeout=0.3):
            events.append("b in")

    async with a.lock("chat:1", timeout=0.3):
        other = asyncio.create_task(wait_for_it())
        await asyncio.sleep(1.0)  # more than three lease lengths
        events.append("a out")
    await asyncio.wait_for(other, 10)
    assert events == ["a out", "b in"]


async def test_ordered_waiters_get_the_lock_smallest_order_first(
    pair: tuple[Store, Store],
) -> None:
    a, b = pair
    c = server_store("postgres" if isinstance(a, PostgresStore) else "redis")
    await c.open()
    order: list[int] = []

    async def wait(store: Store, update_id: int) -> None:
        async with store.lock("chat:1", order=update_id):
            order.append(update_id)

    try:
        async with a.lock("chat:1", order=1):
            later = asyncio.create_task(wait(b, 3))  # the later update queues first
            await until(lambda: _waiting(a, 1), "update 3 waits")
            earlier = asyncio.create_task(wait(c, 2))
            await until(lambda: _waiting(a, 2), "update 2 waits too")
        await asyncio.wait_for(asyncio.gather(later, earlier), 10)
    finally:
        await c.close()
    assert order == [2, 3]


async def _waiting(store: Store, count: int) -> bool:
    return await waiting(store, "chat:1") == count


async def test_a_dead_waiter_loses_its_place(pair: tuple[Store, Store]) -> None:
    a, b = pair
    assert isinstance(a, PostgresStore | RedisStore)
    events: list[str] = []

    async def wait() -> None:
        async with b.lock("chat:1", order=2, timeout=0.3):
            events.append("b in")

    async with a.lock("chat:1"):
        # A process that queued for update 1, then died: it never polls again.
        assert not await a.try_acquire("chat:1", "dead-waiter", 1, 0.3)
        other = asyncio.create_task(wait())
        await until(lambda: _waiting(a, 2), "b waits behind the dead waiter")
        events.append("a out")
    await asyncio.wait_for(other, 10)
    assert events == ["a out", "b in"]


@pytest.mark.parametrize("backend", SERVERS)
async def test_a_wrong_password_is_never_printed(backend: Server) -> None:
    url = urlsplit(server_url(backend))
    netloc = url.netloc.replace(f":{url.password}@", ":Wr0ngPassw0rd@")
    store = PostgresStore if backend == "postgres" else RedisStore
    with pytest.raises(StoreUnavailable) as raised:
        await store(urlunsplit(url._replace(netloc=netloc))).open()
    assert "Wr0ngPassw0rd" not in str(raised.value)
    assert str(raised.value).startswith(f"{backend} at 127.0.0.1:")


@pytest.mark.parametrize("backend", SERVERS)
async def test_a_refused_connection_fails_start_up_in_one_line_without_the_password(
    backend: Server, bot_harness: BotHarness
) -> None:
    scheme = "postgresql" if backend == "postgres" else "redis"
    config = bot_harness.write_config(
        "bot.toml",
        store={"backend": backend, "url": f"{scheme}://botcore:S3cretPassw0rd@127.0.0.1:9/botcore"},
    )
    bot = await bot_harness.spawn(
        config, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(bot.communicate(), 30)
    text = stderr.decode()
    assert bot.returncode == 2, text
    assert f"store: cannot open: StoreUnavailable: {backend} at 127.0.0.1:9" in text
    assert "S3cretPassw0rd" not in text
    assert "Traceback" not in text


def test_a_server_backend_needs_a_url_and_its_password_is_a_secret(tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text('[bot]\ntoken = "1:A"\n[store]\nbackend = "redis"\n')
    with pytest.raises(ConfigError, match=r'^store: backend "redis" needs store.url$'):
        load_config(config)
    config.write_text(
        '[bot]\ntoken = "1:A"\n[store]\nbackend = "postgres"\n'
        'url = "postgresql://botcore:p%40ss-word@db:5432/botcore"\n'
    )
    secrets = load_config(config).secrets()
    assert "p%40ss-word" in secrets and "p@ss-word" in secrets
    assert "postgresql://botcore:p%40ss-word@db:5432/botcore" in secrets


def test_an_unknown_backend_names_the_installed_ones(tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text('[bot]\ntoken = "1:A"\n[store]\nbackend = "postgress"\nurl = "x://y"\n')
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert str(raised.value) == (
        "store: unknown backend \"postgress\" (did you mean 'postgres'?) "
        "(installed: sqlite, memory, postgres, redis)"
    )


@pytest.mark.parametrize(("backend", "driver"), [("postgres", "asyncpg"), ("redis", "redis")])
def test_a_backend_without_its_driver_names_the_extra_to_install(
    backend: str, driver: str, tmp_path: Path
) -> None:
    """The drivers are extras: `botcore check` on a machine without one says how to get it."""
    config = tmp_path / "bot.toml"
    config.write_text(
        f'[bot]\ntoken = "1:A"\n[store]\nbackend = "{backend}"\n'
        'url = "postgresql://botcore:secret-pass@127.0.0.1:9/botcore"\n'
    )
    code = (  # None in sys.modules: the driver cannot be imported, as if it were not installed
        f"import sys; sys.modules[{driver!r}] = None; from botcore.cli import main; "
        f"sys.exit(main(['check', '-c', {str(config)!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == (
        f'botcore: error: store: backend "{backend}" needs the {driver} package, which is not '
        f"installed: pip install 'botcore-framework[{backend}]'\n"
    )


@pytest.mark.parametrize("backend", ["sqlite", *SERVERS])
def test_botcore_plugins_names_the_store_backend_and_its_package(
    backend: str, tmp_path: Path
) -> None:
    config = tmp_path / "bot.toml"
    url = 'url = "redis://127.0.0.1:9/0"\n' if backend != "sqlite" else ""
    config.write_text(f'[bot]\ntoken = "1:A"\n[store]\nbackend = "{backend}"\n{url}')
    done = subprocess.run(
        [sys.executable, "-m", "botcore.cli", "plugins", "-c", str(config)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    last = done.stdout.splitlines()[-1]
    if backend == "sqlite":
        assert last == "store: sqlite (built-in)"
    else:
        version = metadata.version("botcore-framework")
        assert last == (
            f"store: {backend} (botcore_shared_stores:{backend}_store, "
            f"from botcore-framework {version})"
        )


def test_a_sqlite_bot_never_imports_the_server_drivers() -> None:
    """Start-up is benchmarked: asyncpg and redis load only for their backends."""
    code = (
        "import sys, botcore.cli, botcore.app, botcore.runner, botcore.stores.sqlite; "
        "print(sorted(m for m in ('asyncpg', 'redis') if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


async def test_a_broadcast_reaches_the_other_clients_listeners(pair: tuple[Store, Store]) -> None:
    a, b = pair
    heard_a: list[object] = []
    heard_b: list[object] = []
    await a.listen(heard_a.append)
    await b.listen(heard_b.append)
    await a.broadcast({"kind": "cancel", "chat": 7})
    await b.broadcast({"kind": "stopped", "id": "x"})

    async def both_heard() -> bool:
        return len(heard_a) == len(heard_b) == 2

    await until(both_heard, "both clients heard both messages")
    assert heard_a == heard_b == [{"kind": "cancel", "chat": 7}, {"kind": "stopped", "id": "x"}]


async def signal_connections(store: Store) -> int:
    """How many connections of the store's server wait for botcore's signals."""
    if isinstance(store, RedisStore):
        from botcore_shared_stores.redis import SIGNALS as CHANNEL

        return int(dict(await store.redis.pubsub_numsub(CHANNEL))[CHANNEL])
    from botcore_shared_stores.postgres import SIGNALS

    assert isinstance(store, PostgresStore)
    query = f'LISTEN "{SIGNALS}"'  # the last statement of a connection asyncpg made listen
    return int(
        await store.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query = $1",
            query,
        )
    )


async def test_concurrent_first_listens_share_one_connection(pair: tuple[Store, Store]) -> None:
    a, b = pair
    before = await signal_connections(b)
    heard: list[object] = []
    await asyncio.gather(*(a.listen(heard.append) for _ in range(5)))
    assert await signal_connections(b) == before + 1
    await a.close()

    async def gone() -> bool:
        return await signal_connections(b) == before

    await until(gone, "the signal connection closed with the store")


async def test_close_while_listen_connects_leaves_no_connection(pair: tuple[Store, Store]) -> None:
    a, b = pair
    before = await signal_connections(b)
    listening = asyncio.create_task(a.listen(lambda _: None))
    await asyncio.sleep(0)  # listen() has begun to connect
    await a.close()
    await asyncio.gather(listening, return_exceptions=True)

    async def gone() -> bool:
        return await signal_connections(b) == before

    await until(gone, "no signal connection outlives close()")


@pytest.mark.parametrize("pair", ["redis"], indirect=True)  # PostgreSQL has no PubSub object
async def test_a_failed_subscribe_lets_the_next_listen_subscribe(
    pair: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    assert isinstance(a, RedisStore)
    from redis.asyncio.client import PubSub
    from redis.exceptions import ConnectionError as RedisConnectionError

    real = PubSub.subscribe
    failures = [RedisConnectionError("lost")]

    async def flaky(self: PubSub, *args: object, **kwargs: object) -> object:
        if failures:
            raise failures.pop()
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(PubSub, "subscribe", flaky)
    with pytest.raises(RedisConnectionError):
        await a.listen(lambda _: None)
    heard: list[object] = []
    await a.listen(heard.append)
    await b.broadcast({"kind": "cancel", "chat": 1})

    async def arrived() -> bool:
        return heard == [{"kind": "cancel", "chat": 1}]

    await until(arrived, "the second listen() subscribed")


async def test_a_lock_wait_ends_when_the_client_swallows_its_cancel() -> None:
    """redis-py 8.2 returns from a command cancelled mid-flight without raising the cancel: the
    lock's polling loop must still end, or a wait_for around it (the journal's take-over of a
    live instance's lease) never returns."""
    from botcore_shared_stores.server import hold

    class Swallowing:
        """A lease store whose lock is always taken, and whose client eats cancellations."""

        async def try_acquire(self, name: str, token: str, order: int | None, lease: float) -> bool:
            with contextlib.suppress(asyncio.CancelledError):  # the client's bug
                await asyncio.sleep(0.2)  # the command runs when wait_for gives up
            return False

        async def renew(self, name: str, token: str, lease: float) -> bool:
            return True

        async def release(self, name: str, token: str) -> None:
            return None

    lock = hold(Swallowing(), "journal:alive", 30.0, None)  # type: ignore[arg-type]
    waiting = asyncio.ensure_future(asyncio.wait_for(lock.__aenter__(), 0.05))
    done, _ = await asyncio.wait({waiting}, timeout=5)
    assert done, "the wait for the lock did not end"
    with pytest.raises(TimeoutError):
        waiting.result()
