"""The whole bot against a fake Telegram that enforces Telegram's flood limits: answers arrive
whole, no call is made inside a 429 window (0 violations), previews give way to finals."""

from __future__ import annotations

import asyncio
import re

import pytest

from botcore.scheduler import Scheduler
from botcore.testing.fake_openai import ChatReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram


def scheduler_of(bot) -> Scheduler:  # type: ignore[no-untyped-def]
    limiter = bot.runtime.telegram.rate_limiter
    assert isinstance(limiter, Scheduler)
    return limiter


def words(text: str | None) -> list[str]:
    return re.findall(r"\S+", text or "")


# The fake lets one chat have a message every 4 s while the bot believes in Telegram's 1 a
# second: every answer runs into real 429s, and a call inside their windows would count.
@pytest.mark.telegram_limits(per_chat=0.25, per_chat_burst=1)
async def test_a_429_storm_on_one_chat_loses_nothing_and_violates_nothing(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    bot = await start_bot(["chat"])
    paragraphs = [f"Paragraph {i}: " + " ".join(f"w{i}x{j}" for j in range(60)) for i in range(30)]
    answer = "\n\n".join(paragraphs)  # ~16 000 characters: four messages
    openai_server.script_chat(ChatReply(chunks=[p + "\n\n" for p in paragraphs], chunk_delay=0.05))
    await telegram.send_message("tell me everything")
    await telegram.wait_for(
        lambda: (
            sum(len(words(m.plain)) for m in telegram.bot_messages(42)) >= len(words(answer))
            and len(telegram.bot_messages(42)) >= 4
        ),
        timeout=55,
    )
    await asyncio.sleep(1)  # nothing more is on its way: the final edits have been made
    shown = [word for m in telegram.bot_messages(42) for word in words(m.plain)]
    assert shown == words(answer)
    assert telegram.flood.rejections > 0  # the storm happened
    assert telegram.flood.violations == 0
    assert scheduler_of(bot).stats["flood"] > 0


@pytest.mark.telegram_limits
@pytest.mark.timeout(240)
async def test_25_answers_in_one_group_all_arrive_within_20_a_minute(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    bot = await start_bot(["chat"], settings={"chat": {"groups": "all"}})
    openai_server.default_chat = ChatReply(chunk_delay=0.1)
    questions = [f"question {i} " + " ".join(f"w{j}" for j in range(20)) for i in range(25)]
    for i, question in enumerate(questions):
        await telegram.send_message(question, chat_id=-100, chat_type="group", user_id=100 + i)

    def answered() -> list[str]:
        return [
            q for q in questions if any(q in (m.plain or "") for m in telegram.bot_messages(-100))
        ]

    await telegram.wait_for(lambda: len(answered()) == 25, timeout=220)
    assert telegram.flood.violations == 0
    assert telegram.flood.rejections == 0  # the scheduler kept the budget: no 429 at all
    stats = scheduler_of(bot).stats
    assert stats["dropped"] + stats["deferred"] > 0  # previews gave way, finals did not
    assert len(telegram.bot_messages(-100)) == 25  # one message per answer


@pytest.mark.telegram_limits
async def test_50_private_users_streaming_at_once_all_complete(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"])
    openai_server.default_chat = ChatReply(chunk_delay=0.05)
    question = "please " + " ".join(f"w{j}" for j in range(40))
    users = range(1000, 1050)
    for user in users:
        await telegram.send_message(f"{question} {user}", user_id=user)

    def complete(user: int) -> bool:
        messages = telegram.bot_messages(user)
        return bool(messages) and (messages[-1].plain or "").endswith(f"{question} {user}")

    await telegram.wait_for(lambda: all(complete(user) for user in users), timeout=55)
    assert all(len(telegram.bot_messages(user)) == 1 for user in users)
    assert telegram.flood.violations == 0
