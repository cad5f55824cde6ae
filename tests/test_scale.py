"""Several real `botcore run` processes behind one webhook URL, sharing PostgreSQL or Redis.

A round-robin proxy in the test stands where a load balancer would; the fake Telegram posts every
update to it, so consecutive messages of one chat land on different instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from botcore.store import Store
from botcore.stores.memory import MemoryStore
from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness
from botcore.testing.stores import SERVERS, Server, server_store, server_url, waiting, wipe

INSTANCES = 3
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RoundRobin:
    """A load balancer: each update goes to the next instance; remembers who got which."""

    ports: list[int]
    routed: dict[int, int] = field(default_factory=dict)  # update_id -> instance port
    turn: int = 0

    async def forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        port = self.ports[self.turn % len(self.ports)]
        self.turn += 1
        self.routed[json.loads(body)["update_id"]] = port
        headers = {"Content-Type": "application/json"}
        if SECRET_HEADER in request.headers:
            headers[SECRET_HEADER] = request.headers[SECRET_HEADER]
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{port}/telegram", data=body, headers=headers) as answer,
        ):
            return web.Response(status=answer.status, body=await answer.read())


@dataclass
class Cluster:
    store: Store
    proxy: RoundRobin
    bots: list[asyncio.subprocess.Process]


@pytest.fixture(params=SERVERS)
async def cluster(
    request: pytest.FixtureRequest,
    telegram: FakeTelegram,
    bot_harness: BotHarness,
    tmp_path: Path,
) -> AsyncIterator[Cluster]:
    """INSTANCES bot processes in webhook mode behind a round-robin proxy, on one server store."""
    backend: Server = request.param
    store = server_store(backend)
    await store.open()
    await wipe(store)
    proxy = RoundRobin([free_port() for _ in range(INSTANCES)])
    server = web.Application()
    server.router.add_post("/telegram", proxy.forward)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    proxy_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", proxy_port).start()
    env = bot_harness.env(BOTCORE_STORE_URL=server_url(backend))
    marker = request.node.get_closest_marker("cluster_bot")
    extra = marker.kwargs if marker else {}
    bots = []
    try:
        for i, port in enumerate(proxy.ports):
            webhook = {
                "url": f"http://127.0.0.1:{proxy_port}/telegram",
                "listen": "127.0.0.1",
                "port": port,
            }
            config = bot_harness.write_config(
                f"bot{i}.toml",
                ["history", "chat"],
                bot={"mode": "webhook", "webhook": webhook, **extra},
                store={"backend": backend, "url": "${BOTCORE_STORE_URL}"},
                settings={"chat": {"stream": False}},
            )
            with (tmp_path / f"bot{i}.log").open("wb") as log:  # the bot has its own copy
                bots.append(
                    await bot_harness.spawn(
                        config, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log
                    )
                )
        await telegram.wait_for(lambda: len(set_webhook_calls(telegram)) == INSTANCES, timeout=30)
        yield Cluster(store, proxy, bots)
    finally:
        for bot in bots:
            if bot.returncode is None:
                bot.terminate()
        for bot in bots:
            await bot.wait()
        await runner.cleanup()
        await store.close()
    for i in range(INSTANCES):
        log = (tmp_path / f"bot{i}.log").read_text()
        assert "Traceback" not in log and " ERROR " not in log, log
        assert server_url(backend) not in log
    assert all(bot.returncode == 0 for bot in bots)


def set_webhook_calls(telegram: FakeTelegram) -> list[object]:
    return [r for r in telegram.requests if r.method.lower() == "setwebhook"]


def conversation(request: dict[str, object]) -> list[tuple[str, str]]:
    """The user and assistant messages an OpenAI request carried, as (role, text)."""
    messages = request["messages"]
    assert isinstance(messages, list)
    return [(m["role"], m["content"]) for m in messages if m["role"] in ("user", "assistant")]


def turns(*texts: str) -> list[tuple[str, str]]:
    """The history after these user messages were each answered by the fake's echo."""
    found: list[tuple[str, str]] = []
    for text in texts:
        found += [("user", text), ("assistant", f"echo: {text}")]
    return found


async def test_a_conversation_continues_whichever_instance_gets_the_next_message(
    cluster: Cluster, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    said = []
    for text in ["one", "two", "three", "four"]:
        assert (await telegram.reply_to(text, user_id=7, timeout=20)).text == f"echo: {text}"
        said.append(text)
        # The instance that answered saw every turn before, whichever instance had them.
        assert conversation(openai_server.chat_requests[-1]) == [
            *turns(*said[:-1]),
            ("user", text),
        ]
    assert len(set(cluster.proxy.routed.values())) == INSTANCES  # every instance took a turn


async def test_messages_arriving_at_once_are_answered_in_update_order_never_interleaved(
    cluster: Cluster, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    texts = [f"m{i}" for i in range(1, INSTANCES + 2)]  # one more than there are instances
    # Hold the chat's lock (as a long turn would) while every message arrives, so they all queue
    # up at once, on every instance, in whatever order the processes get to the store.
    async with cluster.store.lock("chat:7", order=0):
        for text in texts:
            await telegram.send_message(text, user_id=7)
        for _ in range(1000):
            if await waiting(cluster.store, "chat:7") == INSTANCES:  # the rest wait in-process
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the instances never queued for the chat")
    answers = [(await telegram.next_message(7, timeout=20)).text for _ in texts]
    assert answers == [f"echo: {text}" for text in texts]
    requests = openai_server.chat_requests
    assert [conversation(r) for r in requests] == [
        [*turns(*texts[:i]), ("user", text)] for i, text in enumerate(texts)
    ]
    assert len(set(cluster.proxy.routed.values())) == INSTANCES


class LockDown(MemoryStore):
    """A shared store whose server went away: taking a lock fails."""

    shared = True

    def lock(
        self, name: str, *, timeout: float = 120.0, order: int | None = None
    ) -> AbstractAsyncContextManager[None]:
        @contextlib.asynccontextmanager
        async def refused() -> AsyncIterator[None]:
            raise ConnectionRefusedError("the store is down")
            yield  # pragma: no cover

        return refused()


async def test_a_turn_goes_on_when_the_shared_store_cannot_lock_the_chat(
    start_bot: Any, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_bot([])
    running.app.store = LockDown()
    assert (await telegram.reply_to("/start", user_id=5)).text.startswith("Hi!")
    assert "store: no lock for chat 5: ConnectionRefusedError" in caplog.text


async def test_cancel_stops_a_turn_that_another_instance_is_running(
    cluster: Cluster, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    openai_server.latency = 60  # the model's answer to the first question never comes in time
    await telegram.send_message("a long question", user_id=7)
    await telegram.wait_for(lambda: len(openai_server.chat_requests) == 1, timeout=20)
    openai_server.latency = 0
    # The balancer sends /cancel to the next instance; the turn runs on the one before.
    assert (await telegram.reply_to("/cancel", user_id=7, timeout=10)).text == "Stopped."
    running, cancelled = (cluster.proxy.routed[u] for u in sorted(cluster.proxy.routed)[-2:])
    assert running != cancelled
    # The stopped turn sends nothing; the chat goes on, its question kept in the history.
    answer = await telegram.reply_to("and now?", user_id=7, timeout=20, settle=0.5)
    assert answer.text == "echo: and now?"
    assert conversation(openai_server.chat_requests[-1]) == [
        ("user", "a long question"),
        ("user", "and now?"),
    ]
    # With nothing running anywhere, /cancel says so (after asking the other instances).
    assert (await telegram.reply_to("/cancel", user_id=7, timeout=10)).text.startswith(
        "Nothing to stop"
    )


@pytest.mark.cluster_bot(new_message_cancels=True)
async def test_a_new_message_stops_the_turn_another_instance_is_running(
    cluster: Cluster, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    openai_server.latency = 60  # without a cancel, this turn would hold the chat for a minute
    await telegram.send_message("a long question", user_id=7)
    await telegram.wait_for(lambda: len(openai_server.chat_requests) == 1, timeout=20)
    openai_server.latency = 0
    answer = await telegram.reply_to("never mind, just say hi", user_id=7, timeout=20, settle=0.5)
    assert answer.text == "echo: never mind, just say hi"
    first, second = (cluster.proxy.routed[u] for u in sorted(cluster.proxy.routed))
    assert first != second
    assert [m.text for m in telegram.bot_messages(7)] == ["echo: never mind, just say hi"]
    assert conversation(openai_server.chat_requests[-1]) == [
        ("user", "a long question"),
        ("user", "never mind, just say hi"),
    ]


class SignalsDown(MemoryStore):
    """A shared store whose server refuses to pass signals on."""

    shared = True

    async def broadcast(self, message: dict[str, Any]) -> None:
        raise ConnectionRefusedError("the store is down")


async def test_cancel_answers_when_the_store_cannot_reach_other_instances(
    start_bot: Any, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_bot([])
    running.app.store = SignalsDown()
    assert (await telegram.reply_to("/cancel", user_id=5)).text.startswith("Nothing to stop")
    assert "cannot signal the other instances: ConnectionRefusedError" in caplog.text
