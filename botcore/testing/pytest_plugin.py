"""pytest fixtures for botcore and its plugin authors (loaded through the pytest11 entry point).

async def test_weather(start_bot, telegram):
    await start_bot(["weather"])
    reply = await telegram.reply_to("/weather Paris")
    assert "Paris" in reply.text

Every test is also checked for leaked resources (an unclosed aiohttp session or connector, a
pending task destroyed, a coroutine never awaited, an exception in a finalizer), in its own
process and in the output of the bots `bot_harness.spawn` started: a leak fails the test that
caused it. Opt out with `botcore_leak_check = false` in the pytest ini options, or per test with
`@pytest.mark.allow_leaks`.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pytest

from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import TELEGRAM_LIMITS, FakeTelegram, FloodLimits
from botcore.testing.guard import loopback_only
from botcore.testing.harness import BotHarness, RunningBot
from botcore.testing.leaks import LeakRecords

LEAK_WARNINGS = (
    "error::ResourceWarning",
    "error::pytest.PytestUnraisableExceptionWarning",
    "error:coroutine .* was never awaited:RuntimeWarning",
)
"""Warning filters that turn a leak reported through `warnings` or `sys.unraisablehook` into a
failure; put before the project's own filters, which may override them."""
_LEAK_RECORDS = pytest.StashKey[LeakRecords]()
_STRAY = pytest.StashKey[list[str]]()
_WORKER_LEAKS = "botcore_stray_leaks"
"""The key of what an xdist worker found outside any test, in what it hands its controller."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "botcore_network_guard",
        "fail tests that reach a non-loopback address (default: true)",
        type="bool",
        default=True,
    )
    parser.addini(
        "botcore_leak_check",
        "fail tests that leak sessions, connectors, tasks or coroutines (default: true)",
        type="bool",
        default=True,
    )
    parser.addini(
        "botcore_telegram_limits",
        "the telegram fixture enforces Telegram's flood limits in every test (default: true)",
        type="bool",
        default=True,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_network: let this test reach non-loopback addresses")
    config.addinivalue_line("markers", "allow_leaks: do not fail this test for leaked resources")
    config.addinivalue_line(
        "markers",
        "telegram_limits(limits=TELEGRAM_LIMITS, **fields): the telegram fixture enforces these "
        "flood limits (None: none); fields change single ones, e.g. per_chat_burst=1",
    )
    if not config.getini("botcore_leak_check"):
        return
    # The same list object addinivalue_line appends to: ours go first, so the project's win.
    config.getini("filterwarnings")[:0] = LEAK_WARNINGS
    records = config.stash[_LEAK_RECORDS] = LeakRecords()
    config.stash[_STRAY] = []
    # aiohttp reports an unclosed session, asyncio a destroyed pending task, on this logger.
    logging.getLogger("asyncio").addHandler(records)


def pytest_unconfigure(config: pytest.Config) -> None:
    records = config.stash.get(_LEAK_RECORDS, None)
    if records is not None:
        logging.getLogger("asyncio").removeHandler(records)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("allow_leaks"):
            for line in LEAK_WARNINGS:
                item.add_marker(pytest.mark.filterwarnings(line.replace("error", "default", 1)))


def _checks_leaks(request: pytest.FixtureRequest) -> bool:
    return _LEAK_RECORDS in request.config.stash and not request.node.get_closest_marker(
        "allow_leaks"
    )


@pytest.fixture(autouse=True)
def _botcore_leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test if it left an unclosed session, connector, task or coroutine behind.

    Set up before the test's other fixtures, so it ends after them (and after the event loop):
    the garbage collection here makes what they dropped report itself within this test.
    """
    if not _checks_leaks(request):
        yield
        return
    records = request.config.stash[_LEAK_RECORDS]
    request.config.stash[_STRAY].extend(records.take())  # between tests: reported at the end
    yield
    gc.collect()
    found = records.take()
    if found:
        pytest.fail("the test leaked resources:\n" + "\n".join(found[:20]), pytrace=False)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """An xdist worker finished: what it found outside any test is the controller's to report."""
    found = getattr(node, "workeroutput", {}).get(_WORKER_LEAKS, [])
    stray = node.config.stash.get(_STRAY, None)
    if stray is not None:
        stray.extend(found)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Leaks reported outside any test (a module fixture's teardown, the end of the run) fail
    the run (under pytest-xdist, the controller's: a worker's report would not be shown)."""
    records = session.config.stash.get(_LEAK_RECORDS, None)
    if records is None:
        return
    gc.collect()
    found = [*session.config.stash[_STRAY], *records.take()]
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[_WORKER_LEAKS] = found
        return
    if found:
        print("\nLEAKED RESOURCES outside any test:")
        for line in found[:20]:
            print("  " + line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
    the `telegram_limits` marker or the `botcore_telegram_limits` ini option say (default:
    Telegram's, as botcore's delivery scheduler keeps them; `telegram_limits(None)`: none)."""
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
    request: pytest.FixtureRequest,
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
    found = harness.leaks()
    if found and _checks_leaks(request):
        pytest.fail("a bot process leaked resources:\n" + "\n".join(found[:20]), pytrace=False)


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
