"""The fake Telegram's flood limits: Telegram's 429s, retry windows, violations and counts.

Most tests step the flood clock by hand, so what they assert does not depend on the machine's
speed; one waits a real `retry_after` through python-telegram-bot, as a bot would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from telegram import Bot
from telegram.error import RetryAfter

from botcore.testing.fake_telegram import (
    NO_LIMITS,
    TELEGRAM_LIMITS,
    FakeTelegram,
    FloodLimits,
)

TOKEN = "123456:TEST-TOKEN"
GROUP = -1001234567890


class Clock:
    """A flood clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN, limits=TELEGRAM_LIMITS) as server:
        server.flood.clock = clock
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession, fake: FakeTelegram, method: str, **params: Any
) -> tuple[int, Any]:
    """One raw Bot API call as JSON: (HTTP status, decoded body)."""
    async with http.post(f"{fake.base_url}{TOKEN}/{method}", json=params) as response:
        return response.status, await response.json()


async def say(http: aiohttp.ClientSession, fake: FakeTelegram, chat_id: int) -> tuple[int, Any]:
    return await call(http, fake, "sendMessage", chat_id=chat_id, text="hi")


def too_many(retry_after: int) -> dict[str, Any]:
    """Telegram's 429 body, exactly."""
    return {
        "ok": False,
        "error_code": 429,
        "description": f"Too Many Requests: retry after {retry_after}",
        "parameters": {"retry_after": retry_after},
    }


async def test_the_limits_are_off_by_default(http: aiohttp.ClientSession) -> None:
    async with FakeTelegram(TOKEN) as fake:
        assert fake.flood.limits == NO_LIMITS and not fake.flood.limits.enabled
        statuses = [(await say(http, fake, 42))[0] for _ in range(40)]
    assert statuses == [200] * 40
    assert fake.flood.rejections == 0 and len(fake.bot_messages(42)) == 40


async def test_a_burst_in_one_chat_is_refused_with_telegrams_429(
    fake: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    burst = TELEGRAM_LIMITS.per_chat_burst
    for _ in range(burst):
        assert (await say(http, fake, 42))[0] == 200
    status, body = await say(http, fake, 42)
    assert (status, body) == (429, too_many(1))
    assert len(fake.bot_messages(42)) == burst  # the refused message was not sent
    assert (fake.flood.rejections, fake.flood.violations) == (1, 0)
    assert fake.flood.chat_rejections[42] == 1
    event = fake.flood.events[0]
    assert (event.method, event.chat_id, event.scope, event.violation) == (
        "sendMessage",
        42,
        "chat",
        False,
    )
    # Another chat has its own budget.
    assert (await say(http, fake, 43))[0] == 200


async def test_a_call_inside_the_window_is_a_violation_and_lengthens_it(
    fake: FakeTelegram, http: aiohttp.ClientSession, clock: Clock
) -> None:
    for _ in range(TELEGRAM_LIMITS.per_chat_burst):
        await say(http, fake, 42)
    assert (await say(http, fake, 42))[1] == too_many(1)  # the window: 1 s from now
    clock.advance(0.5)
    # Still inside: refused again, counted, and the window grows by the penalty (1 s).
    assert (await say(http, fake, 42))[1] == too_many(2)
    assert fake.flood.violations == 1 and fake.flood.chat_violations[42] == 1
    assert fake.flood.retry_window(42) == pytest.approx(1.5)
    clock.advance(1.0)  # where the first window would have ended; the lengthened one has not
    assert (await say(http, fake, 42))[0] == 429
    assert fake.flood.violations == 2
    assert fake.flood.rejections == 3
    clock.advance(fake.flood.retry_window(42))
    assert (await say(http, fake, 42))[0] == 200
    assert fake.flood.violations == 2


async def test_waiting_retry_after_clears_it(fake: FakeTelegram) -> None:
    """A bot that waits what the 429 says gets through, with no violation (real time)."""
    fake.flood.clock = asyncio.get_running_loop().time
    async with Bot(TOKEN, base_url=fake.base_url) as bot:
        with pytest.raises(RetryAfter):
            for _ in range(TELEGRAM_LIMITS.per_chat_burst + 1):
                await bot.send_message(42, "hi")
        # What PTB's RetryAfter carries (its .retry_after is mid-deprecation, so read the wire).
        seconds = fake.calls("sendMessage")[-1].response["parameters"]["retry_after"]
        assert seconds == 1
        await asyncio.sleep(seconds)
        assert (await bot.send_message(42, "after the wait")).text == "after the wait"
    assert (fake.flood.rejections, fake.flood.violations) == (1, 0)


async def test_the_per_chat_rate_after_the_burst(
    fake: FakeTelegram, http: aiohttp.ClientSession, clock: Clock
) -> None:
    for _ in range(TELEGRAM_LIMITS.per_chat_burst):
        await say(http, fake, 42)
    for _ in range(5):  # one a second goes on forever
        clock.advance(1.0)
        assert (await say(http, fake, 42))[0] == 200
    clock.advance(0.5)
    assert (await say(http, fake, 42))[0] == 429


async def test_a_group_gets_twenty_a_minute(
    fake: FakeTelegram, http: aiohttp.ClientSession, clock: Clock
) -> None:
    await fake.send_message("hello", chat_id=GROUP, chat_type="supergroup")
    for _ in range(20):  # one a second suits the chat budget but not the group's minute
        assert (await say(http, fake, GROUP))[0] == 200
        clock.advance(1.0)
    status, body = await say(http, fake, GROUP)
    assert (status, body) == (429, too_many(40))  # the first of the 20 leaves the minute at 60 s
    assert fake.flood.events[-1].scope == "group"
    clock.advance(39.0)
    assert (await say(http, fake, GROUP))[0] == 429  # a violation
    assert fake.flood.chat_violations[GROUP] == 1
    clock.advance(fake.flood.retry_window(GROUP))
    assert (await say(http, fake, GROUP))[0] == 200
    # A private chat is not bound by the group rule: 30 over a minute at one a second.
    for _ in range(30):
        clock.advance(1.0)
        assert (await say(http, fake, 42))[0] == 200


async def test_the_global_limit_blocks_every_chat(
    fake: FakeTelegram, http: aiohttp.ClientSession, clock: Clock
) -> None:
    per_second = int(TELEGRAM_LIMITS.global_per_second or 0)
    for chat_id in range(1, per_second + 1):
        assert (await say(http, fake, chat_id))[0] == 200
    assert (await say(http, fake, 1000))[1] == too_many(1)
    assert fake.flood.events[-1].scope == "global"
    assert fake.flood.retry_window() == pytest.approx(1.0)
    # Inside the global window, any chat's call is a violation.
    assert (await say(http, fake, 1001))[0] == 429
    assert fake.flood.violations == 1 and fake.flood.chat_violations[1001] == 1
    # Paid broadcasts have their own, larger budget.
    status, _ = await call(
        http, fake, "sendMessage", chat_id=1002, text="paid", allow_paid_broadcast=True
    )
    assert status == 200
    clock.advance(fake.flood.retry_window())
    assert (await say(http, fake, 1003))[0] == 200


async def test_edits_count_reading_does_not(
    fake: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    _, sent = await say(http, fake, 42)
    message_id = sent["result"]["message_id"]
    for number in range(TELEGRAM_LIMITS.per_chat_burst - 1):
        status, _ = await call(
            http, fake, "editMessageText", chat_id=42, message_id=message_id, text=f"v{number}"
        )
        assert status == 200
    status, body = await call(
        http, fake, "editMessageText", chat_id=42, message_id=message_id, text="one too many"
    )
    assert (status, body) == (429, too_many(1))
    for method in ("getMe", "getUpdates", "getChat"):
        assert (await call(http, fake, method, chat_id=42))[0] == 200
    assert (await call(http, fake, "deleteMessage", chat_id=42, message_id=message_id))[0] == 200


async def test_drafts_and_chat_actions_share_a_typing_budget(
    fake: FakeTelegram, http: aiohttp.ClientSession, clock: Clock
) -> None:
    assert TELEGRAM_LIMITS.typing == ((5.0, 20), (30.0, 40))
    for number in range(10):
        assert (await call(http, fake, "sendChatAction", chat_id=42, action="typing"))[0] == 200
        status, _ = await call(
            http, fake, "sendMessageDraft", chat_id=42, draft_id=1, text=f"draft {number}"
        )
        assert status == 200
    status, body = await call(http, fake, "sendMessageDraft", chat_id=42, draft_id=1, text="x")
    assert (status, body) == (429, too_many(5))
    assert fake.flood.events[-1].scope == "typing"
    # Messages have their own budget: the final answer still goes.
    assert (await say(http, fake, 42))[0] == 200
    clock.advance(5.0)
    for _ in range(20):  # 20 more fit the 5 s window, and fill the 30 s one (40)
        status, _ = await call(http, fake, "sendMessageDraft", chat_id=42, draft_id=1, text="y")
        assert status == 200
        clock.advance(0.25)
    status, body = await call(http, fake, "sendChatAction", chat_id=42, action="typing")
    assert (status, body) == (429, too_many(20))  # the first 20 leave the 30 s window at +30 s


async def test_a_bad_request_uses_no_budget(
    fake: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    for _ in range(5):
        status, _ = await call(http, fake, "sendMessage", chat_id=42, text=" ")
        assert status == 400
    for _ in range(TELEGRAM_LIMITS.per_chat_burst):
        assert (await say(http, fake, 42))[0] == 200
    assert fake.flood.rejections == 0


async def test_reset_forgets_counts_and_windows(
    fake: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    for _ in range(TELEGRAM_LIMITS.per_chat_burst + 2):
        await say(http, fake, 42)
    assert (fake.flood.rejections, fake.flood.violations) == (2, 1)
    fake.reset()
    assert (fake.flood.rejections, fake.flood.violations) == (0, 0)
    assert not fake.flood.events and fake.flood.retry_window(42) == 0
    assert (await say(http, fake, 42))[0] == 200
    assert fake.flood.limits == TELEGRAM_LIMITS  # the limits stay


async def test_limits_change_at_run_time(fake: FakeTelegram, http: aiohttp.ClientSession) -> None:
    assert fake.set_limits(per_chat_burst=1) == replace(TELEGRAM_LIMITS, per_chat_burst=1)
    assert (await say(http, fake, 7))[0] == 200
    assert (await say(http, fake, 7))[0] == 429
    fake.set_limits(None)
    assert fake.flood.limits == NO_LIMITS
    assert [(await say(http, fake, 7))[0] for _ in range(10)] == [200] * 10
    fake.set_limits(FloodLimits(per_chat=1.0, per_chat_burst=2))
    assert [(await say(http, fake, 8))[0] for _ in range(3)] == [200, 200, 429]


async def test_the_control_endpoints_set_and_report_limits(
    fake: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    async def control(action: str, body: dict[str, Any]) -> tuple[int, Any]:
        async with http.post(f"{fake.url}/_fake/{action}", json=body) as response:
            return response.status, await response.json()

    status, body = await control("set_limits", {"preset": "telegram", "per_chat_burst": 1})
    assert status == 200 and body["result"]["per_chat_burst"] == 1
    assert fake.flood.limits == replace(TELEGRAM_LIMITS, per_chat_burst=1)
    await say(http, fake, 5)
    await say(http, fake, 5)
    _, flood = await control("flood", {})
    assert (flood["result"]["rejections"], flood["result"]["violations"]) == (1, 0)
    assert flood["result"]["events"][0]["retry_after"] == 1
    _, stats = await control("stats", {})
    assert stats["result"]["flood_rejections"] == 1
    assert (await control("set_limits", {"per_chat": 1, "no_such_limit": 2}))[0] == 400
    assert (await control("set_limits", {}))[0] == 200
    assert not fake.flood.limits.enabled


async def test_the_telegram_fixture_has_telegrams_limits_without_the_marker(
    telegram: FakeTelegram,
) -> None:
    assert telegram.flood.limits == TELEGRAM_LIMITS


@pytest.mark.telegram_limits(None)
async def test_the_marker_with_none_turns_the_limits_off(telegram: FakeTelegram) -> None:
    assert not telegram.flood.limits.enabled


@pytest.mark.telegram_limits
async def test_the_marker_turns_telegrams_limits_on(telegram: FakeTelegram) -> None:
    assert telegram.flood.limits == TELEGRAM_LIMITS


@pytest.mark.telegram_limits(per_chat_burst=1)
async def test_the_marker_changes_single_limits(
    telegram: FakeTelegram, http: aiohttp.ClientSession
) -> None:
    assert telegram.flood.limits == replace(TELEGRAM_LIMITS, per_chat_burst=1)
    async with http.post(
        f"{telegram.base_url}{telegram.token}/sendMessage", json={"chat_id": 1, "text": "a"}
    ) as first:
        assert first.status == 200
    async with http.post(
        f"{telegram.base_url}{telegram.token}/sendMessage", json={"chat_id": 1, "text": "b"}
    ) as second:
        assert second.status == 429
    assert telegram.flood.rejections == 1
