"""usage end to end: the ledger, prices, budgets with reservations, /usage and /budget."""

from __future__ import annotations

import asyncio

from botcore_usage import Settings, windows

from botcore.store import make_store
from botcore.testing.fake_openai import ChatReply, ErrorReply, FakeOpenAI, sample_audio
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import RunningBot

ADMIN = 1
PRICES = {"chat.input_tokens": 0.001, "chat.output_tokens": 0.002, "image.images": 0.04}


def resets(window: str) -> str:
    found = next(w for w in windows(Settings()) if w.name == window)
    return f"{found.resets:%Y-%m-%d %H:%M} UTC"


def day() -> str:
    return windows(Settings())[0].key


async def ledger(bot: RunningBot, prefix: str) -> dict[str, float]:
    """Stop the bot (every turn is over, the store closed), then read its counters afresh."""
    await bot.stop()
    store = make_store(bot.runtime.config.store)
    await store.open()
    try:
        return await store.totals("usage", prefix)
    finally:
        await store.close()


async def test_every_metered_use_is_recorded_and_priced(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    bot = await start_bot(["usage", "chat", "image"], settings={"usage": {"prices": PRICES}})
    usage = {"prompt_tokens": 100, "completion_tokens": 20}
    openai_server.script_chat(ChatReply("Streamed answer", usage=usage))
    assert (await telegram.reply_to("hi", user_id=7, settle=0.3)).text == "Streamed answer"
    await telegram.reply_to("/image a cat", user_id=7)
    text = (await telegram.reply_to("/usage", user_id=7)).text or ""
    assert "chat.input_tokens: 100" in text and "image.images: 1" in text
    assert "cost: $0.18" in text
    totals = await ledger(bot, f"{day()}:")
    assert totals[f"{day()}:u7:chat.input_tokens"] == 100
    assert totals[f"{day()}:u7:chat.output_tokens"] == 20
    assert totals[f"{day()}:u7:image.images"] == 1
    assert abs(totals[f"{day()}:u7:cost"] - 0.18) < 1e-9  # 100*0.001 + 20*0.002 + 0.04
    assert abs(totals[f"{day()}:all:cost"] - 0.18) < 1e-9


async def test_user_and_global_budgets_refuse_with_the_reset_time(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {
        "usage": {
            "prices": PRICES,
            "user": {"daily": {"cost": 0.08}},
            "global": {"monthly": {"image.images": 3}},
        }
    }
    await start_bot(["usage", "image"], settings=settings)
    for _ in range(2):
        assert (await telegram.reply_to("/image a cat", user_id=7)).kind == "photo"
    refused = await telegram.reply_to("/image a cat", user_id=7)
    assert refused.text == f"You have used up your daily budget. It resets at {resets('daily')}."
    ru = await telegram.reply_to("/image кот", user_id=7, language_code="ru")
    assert ru.text == f"Ваш дневной бюджет исчерпан. Он обновится {resets('daily')}."
    assert (await telegram.reply_to("/image a dog", user_id=8)).kind == "photo"
    refused = await telegram.reply_to("/image a dog", user_id=8)
    assert refused.text == (
        f"The bot has used up its monthly budget. It resets at {resets('monthly')}."
    )
    generations = [r for r in openai_server.requests if r.path.endswith("/images/generations")]
    assert len(generations) == 3


async def test_concurrent_requests_never_overrun_a_budget(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"usage": {"prices": PRICES, "global": {"daily": {"cost": 0.2}}}}  # 5 images
    bot = await start_bot(["usage", "image"], settings=settings)
    openai_server.latency = 0.3  # every request is in flight while the others reserve
    users = range(100, 120)
    await asyncio.gather(*(telegram.send_message("/image a cat", user_id=u) for u in users))
    replies = [await telegram.next_message(u) for u in users]
    photos = [r for r in replies if r.kind == "photo"]
    refused = [r for r in replies if r.text and r.text.startswith("The bot has used up")]
    assert (len(photos), len(refused)) == (5, 15)
    generations = [r for r in openai_server.requests if r.path.endswith("/images/generations")]
    assert len(generations) == 5
    totals = await ledger(bot, f"{day()}:all:")
    assert totals[f"{day()}:all:image.images"] == 5
    assert abs(totals[f"{day()}:all:cost"] - 0.2) < 1e-9


async def test_a_failed_call_gives_its_reservation_back(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"usage": {"prices": PRICES, "user": {"daily": {"cost": 0.04}}}}  # one image
    bot = await start_bot(["usage", "image"], settings=settings)
    openai_server.fail("/images/generations", ErrorReply.server_error())
    failed = await telegram.reply_to("/image a cat", user_id=7)
    assert failed.text == "The model is unavailable right now. Please try again in a minute."
    assert (await telegram.reply_to("/image a cat", user_id=7)).kind == "photo"
    refused = await telegram.reply_to("/image a cat", user_id=7)
    assert refused.text == f"You have used up your daily budget. It resets at {resets('daily')}."
    totals = await ledger(bot, f"{day()}:u7:")
    assert totals == {f"{day()}:u7:image.images": 1, f"{day()}:u7:cost": 0.04}


async def test_a_chat_answer_is_reserved_then_settled_at_what_it_used(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    # The reservation (the estimate + max_answer_tokens) must fit, and is replaced by the real use.
    settings = {
        "usage": {"prices": PRICES, "user": {"daily": {"chat.output_tokens": 200}}},
        "chat": {"max_answer_tokens": 100},
    }
    bot = await start_bot(["usage", "chat"], settings=settings)
    openai_server.script_chat(
        *(
            ChatReply(f"answer {i}", usage={"prompt_tokens": 5, "completion_tokens": 40})
            for i in range(4)
        )
    )
    for i in range(3):
        assert (await telegram.reply_to(f"q{i}", user_id=7, settle=0.2)).text == f"answer {i}"
    refused = await telegram.reply_to("q3", user_id=7)  # 120 used + 100 reserved > 200
    assert refused.text == f"You have used up your daily budget. It resets at {resets('daily')}."
    assert len(openai_server.chat_requests) == 3
    totals = await ledger(bot, f"{day()}:u7:")
    assert totals[f"{day()}:u7:chat.output_tokens"] == 120  # what was used, not reserved


async def test_usage_for_a_user_and_for_an_admin(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"usage": {"prices": PRICES, "user": {"daily": {"cost": 1}}}}
    await start_bot(["usage", "image"], bot={"admins": [ADMIN]}, settings=settings)
    empty = (await telegram.reply_to("/usage", user_id=9)).text or ""
    assert "Today" in empty and "nothing yet" in empty
    await telegram.reply_to("/image a cat", user_id=7)
    await telegram.reply_to("/image a dog", user_id=7)
    await telegram.reply_to("/image a fox", user_id=8)
    assert "image.images: 1" in ((await telegram.reply_to("/usage", user_id=8)).text or "")
    mine = (await telegram.reply_to("/usage", user_id=7)).text or ""
    assert "image.images: 2" in mine and "cost: $0.08" in mine
    assert f"limit cost: $0.08 of $1.00, resets at {resets('daily')}" in mine
    assert "User 8" not in mine and "The whole bot" not in mine
    everyone = (await telegram.reply_to("/usage", user_id=ADMIN)).text or ""
    assert "The whole bot" in everyone and "image.images: 3" in everyone
    top = everyone.split("Top users")[1]
    assert top.index("User 7: $0.08") < top.index("User 8: $0.04")
    assert "image.images: 1" in (await telegram.reply_to("/usage 8", user_id=ADMIN)).text
    assert "User 8" not in (await telegram.reply_to("/usage 8", user_id=7)).text  # own only
    ru = (await telegram.reply_to("/usage", user_id=7, language_code="ru")).text or ""
    assert "Сегодня" in ru and "лимит cost" in ru


async def test_admins_set_budgets_in_chat(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"usage": {"prices": PRICES}}
    await start_bot(["usage", "image"], bot={"admins": [ADMIN]}, settings=settings)
    reply = await telegram.reply_to("/budget 7 daily 1 image.images", user_id=ADMIN)
    assert reply.text == "Budget of User 7, daily: image.images 1."
    assert (await telegram.reply_to("/image a cat", user_id=7)).kind == "photo"
    refused = await telegram.reply_to("/image a cat", user_id=7)
    assert refused.text == f"You have used up your daily budget. It resets at {resets('daily')}."
    assert (await telegram.reply_to("/image a cat", user_id=8)).kind == "photo"  # others: free
    reply = await telegram.reply_to("/budget 7 daily off image.images", user_id=ADMIN)
    assert reply.text == "Budget of User 7, daily: no limits."
    assert (await telegram.reply_to("/image a cat", user_id=7)).kind == "photo"
    await telegram.reply_to("/usage", user_id=7)  # chat 7's turns are over: all 3 images counted
    await telegram.reply_to("/budget global monthly 0.12", user_id=ADMIN)
    refused = await telegram.reply_to("/image a cat", user_id=8)
    assert refused.text == (
        f"The bot has used up its monthly budget. It resets at {resets('monthly')}."
    )
    assert (await telegram.reply_to("/budget 7 reset", user_id=ADMIN)).text == (
        "User 7 has the default budget again."
    )
    for bad in ("/budget 7 weekly 1", "/budget 7 daily nan", "/budget 7 daily -1", "/budget x"):
        assert (await telegram.reply_to(bad, user_id=ADMIN)).text.startswith("Usage:")


async def test_a_failed_turn_that_used_tokens_is_still_charged(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"usage": {"prices": PRICES}, "chat": {"stream": False}}
    bot = await start_bot(["usage", "chat"], settings=settings)
    openai_server.script_chat(ChatReply("", usage={"prompt_tokens": 30, "completion_tokens": 0}))
    reply = await telegram.reply_to("say nothing", user_id=7)
    assert reply.text == "The model returned an empty answer. Please try again."
    totals = await ledger(bot, f"{day()}:u7:")
    assert totals[f"{day()}:u7:chat.input_tokens"] == 30
    assert abs(totals[f"{day()}:u7:cost"] - 0.03) < 1e-9


async def test_voice_reserves_the_recording_seconds(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"usage": {"user": {"daily": {"voice.seconds": 0.8}}}}
    await start_bot(["usage", "voice"], settings=settings)
    data, _ = sample_audio("opus")  # half a second
    openai_server.script_transcription("hello there")
    await telegram.send_voice(data)
    assert (await telegram.next_message(42)).text == "🎤 hello there"
    await telegram.send_voice(data)
    refused = await telegram.next_message(42)
    assert refused.text == f"You have used up your daily budget. It resets at {resets('daily')}."
    transcriptions = [r for r in openai_server.requests if r.path.endswith("/transcriptions")]
    assert len(transcriptions) == 1


async def test_money_that_exactly_fits_a_budget_is_not_refused(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"usage": {"prices": {"image.images": 0.1}, "user": {"daily": {"cost": 0.3}}}}
    await start_bot(["usage", "image"], settings=settings)
    for _ in range(3):  # 0.1 + 0.1 + 0.1 > 0.3 in floating point
        assert (await telegram.reply_to("/image a cat", user_id=7)).kind == "photo"
    refused = await telegram.reply_to("/image a cat", user_id=7)
    assert refused.text == f"You have used up your daily budget. It resets at {resets('daily')}."
    assert "limit cost: $0.30 of $0.30" in (
        (await telegram.reply_to("/usage", user_id=7)).text or ""
    )


def test_windows_are_the_current_ones_and_roll_over_when_the_day_ends(monkeypatch) -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    import botcore_usage

    zone = "Asia/Kathmandu"  # UTC+05:45: no day starts at a whole UTC hour
    settings = Settings(timezone=zone)
    today = dt.datetime.now(ZoneInfo(zone))
    current = windows(settings)
    assert windows(settings) is current  # worked out once a day, not once a turn
    assert [w.key for w in current] == [f"d:{today:%Y-%m-%d}", f"m:{today:%Y-%m}"]
    assert windows(Settings())[0].key == f"d:{dt.datetime.now(dt.UTC):%Y-%m-%d}"
    ends = current[0].resets
    assert (ends.hour, ends.minute, ends.utcoffset()) == (0, 0, dt.timedelta(hours=5, minutes=45))
    tomorrow = windows(settings, ends + dt.timedelta(seconds=1))
    assert tomorrow[0].key == f"d:{ends:%Y-%m-%d}" != current[0].key
    assert tomorrow[0].resets == ends + dt.timedelta(days=1)
    # Once the day's end has passed, the windows are worked out again.
    monkeypatch.setattr(botcore_usage.time, "time", lambda: ends.timestamp() + 1)
    assert windows(settings) is not current
