"""pytest fixtures for botcore and its plugin authors (loaded through the pytest11 entry point).

async def test_weather(start_bot, telegram):
    await start_bot(["weather"])
    reply = await telegram.reply_to("/weather Paris")
    assert "Paris" in reply.text
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pytest

from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import TELEGRAM_LIMITS, FakeTelegram, FloodLimits
from botcore.testing.guard import loopback_only
from botcore.testing.harness import BotHarness, RunningBot


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "botcore_network_guard",
        "fail tests that reach a non-loopback address (default: true)",
        type="bool",
        default=True,
    )
    parser.addini(
        "botcore_telegram_limits",
        "the telegram fixture enforces Telegram's flood limits in every test (default: false)",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_network: let this test reach non-loopback addresses")
    config.addinivalue_line(
        "markers",
        "telegram_limits(limits=TELEGRAM_LIMITS, **fields): the telegram fixture enforces these "
        "flood limits (None: none); fields change single ones, e.g. per_chat_burst=1",
    )


def _flood_limits(request: pytest.FixtureRequest) -> FloodLimits | None:
    """The limits the `telegram` fixture enforces: the test's marker, else the ini default."""
    marker = request.node.get_closest_marker("telegram_limits")
    if marker is None:
        return TELEGRAM_LIMITS if request.config.getini("botcore_telegram_limits") else None
    limits = marker.args[0] if marker.args else TELEGRAM_LIMITS
    if limits is not None and not isinstance(limits, FloodLimits):
        raise TypeError(f"telegram_limits takes a FloodLimits or None, not {limits!r}")
    return replace(limits or FloodLimits(), **marker.kwargs) if marker.kwargs else limits


@pytest.fixture(autouse=True)
def _botcore_network_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test runs loopback-only; an attempt to leave the machine fails the test."""
    if not request.config.getini("botcore_network_guard") or request.node.get_closest_marker(
        "allow_network"
    ):
        yield
        return
    with loopback_only() as refused:
        yield
    if refused:
        pytest.fail(f"the test tried to reach non-loopback addresses: {sorted(set(refused))}")


@pytest.fixture
async def telegram(request: pytest.FixtureRequest) -> AsyncIterator[FakeTelegram]:
    """A fake Telegram Bot API server on 127.0.0.1 with a user-side driver; flood limits as
    the `telegram_limits` marker or the `botcore_telegram_limits` ini option say (default: off)."""
    server = FakeTelegram(limits=_flood_limits(request))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeOpenAI]:
    """A fake OpenAI API server on 127.0.0.1: scripted replies, a request log, fault injection."""
    server = FakeOpenAI()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def bot_harness(
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[BotHarness]:
    """Starts real bots against the fakes and stops them after the test.

    The test runs in its own empty working directory, so relative paths in settings (the history
    file) never leak between tests, and anything a plugin leaves behind can be seen.
    """
    monkeypatch.chdir(tmp_path)
    harness = BotHarness(telegram, openai_server, tmp_path)
    try:
        yield harness
    finally:
        await harness.stop_all()


class StartBot(Protocol):
    """The type of the `start_bot` fixture, for test authors who annotate their parameters."""

    async def __call__(
        self,
        plugins: Iterable[str] = (),
        *,
        bot: Mapping[str, Any] | None = None,
        openai: Mapping[str, Any] | None = None,
        store: Mapping[str, Any] | None = None,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> RunningBot: ...


@pytest.fixture
def start_bot(bot_harness: BotHarness) -> StartBot:
    """`await start_bot(["chat", ...], settings={"chat": {...}})` starts the real bot, polling
    the fakes: `bot_harness.start`, with the same parameters. It is stopped after the test."""
    return bot_harness.start
