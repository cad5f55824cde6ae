"""Several real `botcore run` processes behind one webhook URL, sharing PostgreSQL or Redis.

A round-robin proxy in the test stands where a load balancer would; the fake Telegram posts every
update to it, so consecutive messages of one chat land on different instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from botcore_shared_stores.testing import waiting, wipe

from botcore.store import Store
from botcore.stores.memory import MemoryStore
from botcore.testing.fake_openai import ChatReply, FakeOpenAI, ToolCall
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness
from botcore.testing.stores import SERVERS, Server, server_store, server_url
from botcore.testing.toml_writer import to_toml

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


@dataclass(frozen=True)
class Setup:
    """What each instance runs: its plugins and their settings."""

    plugins: tuple[str, ...] = ("history", "chat")
    settings: dict[str, dict[str, Any]] = field(default_factory=lambda: {"chat": {"stream": False}})
    tools: dict[str, Any] = field(default_factory=dict)
    """bot.toml's [tools] (the tool gate)."""


@dataclass
class Cluster:
    store: Store
    proxy: RoundRobin
    bots: list[asyncio.subprocess.Process]
    logs: list[Path]
    """Each instance's log (stderr), by instance index (as `proxy.ports`)."""
    start: Callable[[int], Awaitable[asyncio.subprocess.Process]]
    telegram: FakeTelegram

    def instance(self, update_id: int) -> int:
        """The index of the instance the balancer sent an update to."""
        return self.proxy.ports.index(self.proxy.routed[update_id])

    def last(self) -> int:
        """The index of the instance that got the latest update."""
        return self.instance(max(self.proxy.routed))

    async def restart(self) -> None:
        """Stop every instance (SIGTERM, as an orchestrator would), then start them again."""
        for bot in self.bots:
            bot.terminate()
        for bot in self.bots:
            await bot.wait()
        assert all(bot.returncode == 0 for bot in self.bots)
        before = len(set_webhook_calls(self.telegram))
        self.bots[:] = [await self.start(i) for i in range(INSTANCES)]
        await self.telegram.wait_for(
            lambda: len(set_webhook_calls(self.telegram)) == before + INSTANCES, timeout=30
        )


@pytest.fixture
def cluster_setup() -> Setup:
    """The instances' plugins; a test parametrizes `cluster_setup` to run others."""
    return Setup()


@pytest.fixture(params=SERVERS)
async def cluster(
    request: pytest.FixtureRequest,
    cluster_setup: Setup,
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
    env = bot_harness.env(
        BOTCORE_STORE_URL=server_url(backend), PYTHONPATH=str(Path(__file__).parent)
    )  # the tests' sample plugins are importable
    marker = request.node.get_closest_marker("cluster_bot")
    extra = marker.kwargs if marker else {}
    logs = [tmp_path / f"bot{i}.log" for i in range(INSTANCES)]

    async def start(i: int) -> asyncio.subprocess.Process:
        webhook = {
            "url": f"http://127.0.0.1:{proxy_port}/telegram",
            "listen": "127.0.0.1",
            "port": proxy.ports[i],
        }
        config = bot_harness.write_config(
            f"bot{i}.toml",
            cluster_setup.plugins,
            bot={"mode": "webhook", "webhook": webhook, **extra},
            store={"backend": backend, "url": "${BOTCORE_STORE_URL}"},
            settings=cluster_setup.settings,
        )
        if cluster_setup.tools:
            config.write_text(config.read_text() + to_toml({"tools": cluster_setup.tools}))
        with logs[i].open("ab") as stderr:  # the process has its own copy of the file
            return await bot_harness.spawn(
                config, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr
            )

    bots: list[asyncio.subprocess.Process] = []
    try:
        for i in range(INSTANCES):
            bots.append(await start(i))
        await telegram.wait_for(lambda: len(set_webhook_calls(telegram)) == INSTANCES, timeout=30)
        yield Cluster(store, proxy, bots, logs, start, telegram)
    finally:
        for bot in bots:
            if bot.returncode is None:
                bot.terminate()
        for bot in bots:
            await bot.wait()
        await runner.cleanup()
        await store.close()
    for path in logs:
        log = path.read_text()
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
    running.runtime.store = LockDown()
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


async def test_cancel_leaves_someone_elses_turn_on_another_instance(
    cluster: Cluster, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    group = {"chat_id": -70, "chat_type": "group"}
    openai_server.latency = 60  # the model's answer to the first question never comes in time
    await telegram.send_message("@botcore_test_bot a long question", user_id=7, **group)
    await telegram.wait_for(lambda: len(openai_server.chat_requests) == 1, timeout=20)
    openai_server.latency = 0
    # Another member's /cancel reaches another instance: it says whose answer it is, stops none.
    reply = await telegram.reply_to("/cancel", user_id=8, timeout=10, **group)
    assert reply.text == "This answer is for someone else: only they or a bot admin can stop it."
    assert (await telegram.reply_to("/cancel", user_id=7, timeout=10, **group)).text == "Stopped."
    asked, refused, stopped = (cluster.instance(u) for u in sorted(cluster.proxy.routed)[-3:])
    assert asked not in (refused, stopped)


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
    running.runtime.store = SignalsDown()
    assert (await telegram.reply_to("/cancel", user_id=5)).text.startswith("Nothing to stop")
    assert "cannot signal the other instances: ConnectionRefusedError" in caplog.text


# Settings changed in chat (/allow, /deny, /budget, /disable, /enable) bind every instance.

ADMINS = [1, 2, 3]
ADMIN = ADMINS[0]
MANAGED = Setup(
    plugins=("access", "admin", "usage", "history", "chat"),
    # A refused user is told at every message, so each refusal shows which instance refused.
    settings={"chat": {"stream": False}, "access": {"remind_hours": 1e-9}},
)
BLOCKED = "Sorry, you may not use this bot."
APPLIED = "settings changed in chat applied"
"""What an instance logs when it applied a change another instance made."""


def applied(cluster: Cluster) -> list[int]:
    """How many changes made elsewhere each instance has applied."""
    return [path.read_text().count(APPLIED) for path in cluster.logs]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (30 s at most) for a condition to hold."""
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def change(cluster: Cluster, command: str, answer: str, admin: int = ADMIN) -> int:
    """An admin's command, answered; then every other instance has applied it (they are told
    through the store at once, which the log shows). The index of the instance that took it."""
    before = applied(cluster)
    assert (await cluster.telegram.reply_to(command, user_id=admin, timeout=20)).text == answer
    handled = cluster.last()
    for i in range(INSTANCES):
        if i != handled:
            await until(
                lambda i=i: applied(cluster)[i] > before[i], f"instance {i} applied {command}"
            )
    return handled


async def answers(cluster: Cluster, user_id: int, *texts: str) -> list[tuple[int, str]]:
    """Each text sent by the user, with the instance that took it and the answer's text."""
    found = []
    for text in texts:
        reply = await cluster.telegram.reply_to(text, user_id=user_id, timeout=20)
        found.append((cluster.last(), reply.text or ""))
    return found


EVERY = set(range(INSTANCES))


@pytest.mark.cluster_bot(admins=ADMINS)
@pytest.mark.parametrize("cluster_setup", [MANAGED])
async def test_deny_on_one_instance_then_allow_on_another_holds_everywhere_and_after_a_restart(
    cluster: Cluster, openai_server: FakeOpenAI
) -> None:
    denied_on = await change(cluster, "/deny 7", "User 7 may no longer use the bot.")
    refused = await answers(cluster, 7, "hi", "hi", "hi")
    assert {i for i, _ in refused} == EVERY and {t for _, t in refused} == {BLOCKED}
    assert openai_server.chat_requests == []

    allowed_on = await change(cluster, "/allow 7", "User 7 may use the bot now.")
    assert allowed_on != denied_on  # the instance that allows never saw the /deny itself
    answered = await answers(cluster, 7, "one", "two", "three")
    assert {i for i, _ in answered} == EVERY
    assert [t for _, t in answered] == ["echo: one", "echo: two", "echo: three"]
    stored = {"plugins.access.blocked": [], "plugins.access.users": [7]}
    assert await cluster.store.scan("config") == stored

    await cluster.restart()
    answered = await answers(cluster, 7, "four", "five", "six")
    assert {i for i, _ in answered} == EVERY
    assert [t for _, t in answered] == ["echo: four", "echo: five", "echo: six"]
    assert await cluster.store.scan("config") == stored


@pytest.mark.cluster_bot(admins=ADMINS)
@pytest.mark.parametrize("cluster_setup", [MANAGED])
async def test_denials_made_at_once_on_three_instances_are_all_kept(cluster: Cluster) -> None:
    telegram = cluster.telegram
    for admin, user in zip(ADMINS, (11, 12, 13), strict=True):  # three admin chats: no chat lock
        await telegram.send_message(f"/deny {user}", user_id=admin)
    for admin, user in zip(ADMINS, (11, 12, 13), strict=True):
        reply = await telegram.next_message(admin, timeout=20)
        assert reply.text == f"User {user} may no longer use the bot."
    assert {cluster.instance(u) for u in cluster.proxy.routed} == EVERY
    # Each instance applies the three as it reads the store after the next change.
    await change(cluster, "/deny 14", "User 14 may no longer use the bot.")
    assert await cluster.store.scan("config") == {"plugins.access.blocked": [11, 12, 13, 14]}
    refused = [(await answers(cluster, user, "hi"))[0] for user in (11, 12, 13)]
    assert {i for i, _ in refused} == EVERY and {t for _, t in refused} == {BLOCKED}


def without_chat(menu: str) -> str:
    """A menu's command names without the chat plugin's."""
    return " ".join(
        name for name in menu.split() if name not in ("retry", "mode", "model", "reasoning")
    )


def menus(telegram: FakeTelegram) -> list[str]:
    """The command names of every menu set for all users in the default language, in order."""
    return [
        " ".join(c["command"] for c in call.params["commands"])
        for call in telegram.calls("setMyCommands")
        if not call.params.get("scope") and not call.params.get("language_code")
    ]


@pytest.mark.cluster_bot(admins=ADMINS)
@pytest.mark.parametrize("cluster_setup", [MANAGED])
async def test_budget_disable_and_enable_bind_every_instance_and_the_menu_follows_once(
    cluster: Cluster, openai_server: FakeOpenAI
) -> None:
    telegram = cluster.telegram
    await change(
        cluster,
        "/budget 7 daily 0 chat.input_tokens",
        "Budget of User 7, daily: chat.input_tokens 0.",
    )
    refused = await answers(cluster, 7, "hi", "hi", "hi")
    assert {i for i, _ in refused} == EVERY
    assert all(t.startswith("You have used up your daily budget.") for _, t in refused)
    assert openai_server.chat_requests == []
    await change(
        cluster, "/budget 7 daily off chat.input_tokens", "Budget of User 7, daily: no limits."
    )
    answered = await answers(cluster, 7, "one", "two", "three")
    assert {i for i, _ in answered} == EVERY
    assert [t for _, t in answered] == ["echo: one", "echo: two", "echo: three"]

    started = menus(telegram)
    assert len(started) == INSTANCES and "retry" in started[-1]  # each instance set it at start
    await change(cluster, "/disable chat", "chat is off. /enable chat switches it back on.")
    off = await answers(cluster, 7, "hello", "hello", "hello")
    assert {i for i, _ in off} == EVERY
    assert {t for _, t in off} == {"I only answer commands here. /help lists them."}
    assert len(openai_server.chat_requests) == 3
    await telegram.wait_for(lambda: len(menus(telegram)) > len(started), timeout=20)
    assert menus(telegram)[len(started) :] == [without_chat(started[-1])]  # once

    await change(cluster, "/enable chat", "chat is on.")
    answered = await answers(cluster, 7, "four", "five", "six")
    assert {i for i, _ in answered} == EVERY
    assert [t for _, t in answered] == ["echo: four", "echo: five", "echo: six"]
    await telegram.wait_for(lambda: len(menus(telegram)) > len(started) + 1, timeout=20)
    await answers(cluster, 7, "seven")  # time for a second menu, if any instance sent one
    assert menus(telegram)[len(started) :] == [without_chat(started[-1]), started[-1]]


async def test_an_update_delivered_again_to_another_instance_is_answered_once(
    cluster: Cluster, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """Telegram redelivers an update whose answer it missed, and the balancer sends it to
    another instance: the store lets one instance take it."""
    message = {
        "message_id": 1,
        "date": int(time.time()),
        "chat": {"id": 7, "type": "private", "first_name": "Test"},
        "from": {"id": 7, "is_bot": False, "first_name": "Test", "language_code": "en"},
        "text": "once",
    }
    await telegram.send_update({"update_id": 900, "message": message})
    await telegram.send_update({"update_id": 900, "message": message})
    await telegram.wait_for(lambda: len(telegram.webhook_deliveries) == 2, timeout=20)
    assert cluster.proxy.turn == 2  # round robin: the two deliveries went to two instances
    assert (await telegram.next_message(7, timeout=20)).text == "echo: once"
    assert (await telegram.reply_to("next", user_id=7, timeout=20)).text == "echo: next"
    assert [m.text for m in telegram.bot_messages(7)] == ["echo: once", "echo: next"]
    assert [conversation(r)[-1] for r in openai_server.chat_requests] == [
        ("user", "once"),
        ("user", "next"),
    ]


GATED = Setup(
    plugins=("history", "chat", "sample_plugins.toolbox"),
    tools={"policy": {"whoami": {"confirm": True}}},
)


@pytest.mark.parametrize("cluster_setup", [GATED])
async def test_an_approval_pressed_on_another_instance_runs_the_call_where_it_waits(
    cluster: Cluster, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """The turn waits on one instance; the balancer takes the press to the next one, which
    decides it in the store; the waiting turn reads the decision and runs the tool."""
    openai_server.script_chat(ChatReply(tool_calls=[ToolCall("whoami", {}, "c1")]), "You are 7.")
    await telegram.send_message("who am I?", user_id=7)
    prompt = await telegram.next_message(7, timeout=20)
    await telegram.send_callback_query(prompt, button_text="✅ Approve", user_id=7)
    assert (await telegram.next_message(7, timeout=20)).text == "Approved: whoami runs now."
    assert (await telegram.next_message(7, timeout=20)).text == "You are 7."
    asked, pressed = (cluster.instance(u) for u in sorted(cluster.proxy.routed)[-2:])
    assert asked != pressed
    assert openai_server.tool_messages() == {"c1": "user 7"}
