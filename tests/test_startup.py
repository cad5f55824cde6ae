"""Start-up as an operator meets it: the real `botcore run` process against servers that are not
Telegram, a network that comes up late, a rejected token; and a first answer that needs no SDK."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def not_a_bot_api(status: int, body: bytes) -> AsyncIterator[str]:
    """A plain web server answering every request with `status` and `body`; yields its root URL."""

    async def answer(_request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="text/html")

    server = web.Application()
    server.router.add_route("*", "/{path:.*}", answer)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, LOOPBACK, port).start()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        await runner.cleanup()


class Bot:
    """A `botcore run` subprocess and its stderr, read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def wait_for(self, text: str, timeout: float = 60) -> None:  # noqa: ASYNC109
        """Read stderr until a line holds `text`."""
        stderr = self.process.stderr
        assert stderr is not None

        async def scan() -> None:
            while True:
                raw = await stderr.readline()
                assert raw, f"the bot ended before printing {text!r}:\n{self.output}"
                self.lines.append(raw.decode(errors="replace"))
                if text in self.lines[-1]:
                    return

        try:
            await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {text!r} within {timeout} s:\n{self.output}") from None

    async def exit_code(self, timeout: float = 60) -> int:  # noqa: ASYNC109
        """Wait for the process to end; the rest of stderr is read."""
        assert self.process.stderr is not None
        rest = await asyncio.wait_for(self.process.stderr.read(), timeout)
        self.lines.append(rest.decode(errors="replace"))
        return await self.process.wait()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def assert_clean(self) -> None:
        """What an operator must never see: a traceback, a leaked session, the token."""
        assert "Traceback" not in self.output, self.output
        assert "Unclosed" not in self.output, self.output
        assert "TEST-TOKEN" not in self.output and "REJECTED" not in self.output, self.output


@pytest.fixture
async def run_bot(
    bot_harness: BotHarness, bot_output: Callable[[str], None]
) -> AsyncIterator[Callable[..., Any]]:
    """`await run_bot(bot={...})` starts `botcore run` on a bot.toml for the fakes, with
    `bot` keys overridden; every process is stopped at the end and its output scanned."""
    started: list[Bot] = []

    async def run(plugins: tuple[str, ...] = (), **bot: Any) -> Bot:
        config = bot_harness.write_config("bot.toml", plugins, bot=bot, store={"backend": "memory"})
        env = bot_harness.env(PYTHONUNBUFFERED="1")
        if "token" in bot:  # a literal token, not the fake's
            env.pop("TELEGRAM_BOT_TOKEN")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "botcore",
            "run",
            "--config",
            str(config),
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        started.append(Bot(process))
        return started[-1]

    try:
        yield run
    finally:
        for bot in started:
            if bot.process.returncode is None:
                bot.process.kill()
                await bot.process.wait()
            bot_output(bot.output)


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, b"<html><body>Not Found</body></html>"), (404, b""), (200, b"")],
    ids=["404-html", "404-empty", "200-empty"],
)
async def test_a_base_url_that_is_not_a_bot_api_is_named_in_one_line(
    run_bot: Callable[..., Any], status: int, body: bytes
) -> None:
    async with not_a_bot_api(status, body) as root:
        bot = await run_bot(base_url=f"{root}/bot")
        assert await bot.exit_code() == 2
        expected = (
            f"botcore: error: bot.base_url: {root}/bot does not answer like a Telegram "
            f"Bot API server (HTTP {status})"
        )
        assert expected in bot.output
        assert "token" not in bot.output
        bot.assert_clean()


async def test_a_rejected_token_exits_3_at_once(
    run_bot: Callable[..., Any], telegram: FakeTelegram
) -> None:
    bot = await run_bot(token="123456:REJECTED")
    assert await bot.exit_code() == 3
    assert "botcore: error: bot.token: Telegram rejected the token" in bot.output
    assert "trying again" not in bot.output
    bot.assert_clean()
    assert not telegram.calls("getUpdates")


async def test_start_up_waits_for_the_network_then_answers(
    run_bot: Callable[..., Any], bot_harness: BotHarness
) -> None:
    port = free_port()  # nobody listens there yet: connection refused
    bot = await run_bot(base_url=f"http://{LOOPBACK}:{port}/bot")
    await bot.wait_for("cannot reach the Telegram Bot API")
    await bot.wait_for("trying again in")
    assert bot.process.returncode is None
    late = FakeTelegram(bot_harness.telegram.token)  # the network is up
    await late.start(LOOPBACK, port)
    try:
        await bot.wait_for("is up")
        answer = await late.reply_to("/start", timeout=30)
        assert (answer.text or "").startswith("Hi! I'm a bot built on botcore.")
        bot.process.send_signal(signal.SIGTERM)
        assert await bot.exit_code() == 0
    finally:
        await late.stop()
    bot.assert_clean()


async def test_a_network_that_stays_down_exits_4(run_bot: Callable[..., Any]) -> None:
    port = free_port()
    bot = await run_bot(base_url=f"http://{LOOPBACK}:{port}/bot", startup_timeout=1.5)
    assert await bot.exit_code() == 4
    assert (
        f"botcore: error: cannot reach the Telegram Bot API at http://{LOOPBACK}:{port}/bot "
        "for 1.5 s, giving up" in bot.output
    )
    assert "trying again in 1 s" in bot.output
    bot.assert_clean()


async def test_a_text_answer_never_imports_the_openai_sdk(
    start_bot: Callable[..., Any],
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDK takes ~0.5 s of CPU to import: the chat plugin's answers, streamed or not, and
    start-up itself go without it (the runner loads it later, when the bot idles)."""
    monkeypatch.setitem(sys.modules, "openai", None)  # any `import openai` now fails
    openai_server.script_chat("streamed")
    openai_server.script_chat("whole")
    streaming = await start_bot(["history", "chat"])
    assert (await telegram.reply_to("hi", timeout=10)).text == "streamed"
    await streaming.stop()
    await start_bot(["history", "chat"], settings={"chat": {"stream": False}})
    assert (await telegram.reply_to("again", user_id=7, timeout=10)).text == "whole"
    assert sys.modules["openai"] is None


def test_exit_codes_are_documented() -> None:
    from botcore.cli import EXIT_CODES

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for code in ("2", "3", "4"):
        assert f"| {code} |" in readme
    assert "4 Telegram" in EXIT_CODES and "3 Telegram rejected the token" in EXIT_CODES
