"""A real `botcore run` started with a backlog answers it and stops without a leak line in its
log (issue 15: 50 waiting turns each opened an HTTP session, 49 of them left unclosed)."""

from __future__ import annotations

import asyncio
import signal

from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness

BACKLOG = 50


async def test_a_cold_start_with_a_backlog_leaks_nothing(
    telegram: FakeTelegram, openai_server: FakeOpenAI, bot_harness: BotHarness
) -> None:
    for user in range(BACKLOG):
        await telegram.send_message(f"question {user}", user_id=1000 + user)
    bot_harness.write_config(plugins=["history", "chat"], bot={"poll_timeout": 1})
    bot = await bot_harness.spawn(stderr=asyncio.subprocess.PIPE)
    try:
        for user in range(BACKLOG):
            chat = 1000 + user
            await telegram.wait_for(
                lambda chat=chat, user=user: any(
                    m.text == f"echo: question {user}" for m in telegram.bot_messages(chat)
                ),
                timeout=60,
            )
        assert len(openai_server.chat_requests) == BACKLOG
    finally:
        if bot.returncode is None:
            bot.send_signal(signal.SIGTERM)
        assert bot.stderr is not None
        output = (await bot.stderr.read()).decode(errors="replace")
        await bot.wait()
    assert bot.returncode == 0, output
    assert "Unclosed" not in output
    await bot_harness.stop_all()
    assert bot_harness.leaks() == []


async def test_a_rejected_token_stops_start_up_without_a_leak(bot_harness: BotHarness) -> None:
    bot_harness.write_config(plugins=["chat"])
    bot = await bot_harness.spawn(
        env=bot_harness.env(TELEGRAM_BOT_TOKEN="1:REJECTED"), stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await bot.communicate()
    output = stderr.decode(errors="replace")
    assert bot.returncode == 3, output  # a rejected token (config errors are 2)
    assert "bot.token: Telegram rejected the token" in output
    await bot_harness.stop_all()
    assert bot_harness.leaks() == []  # the HTTP sessions opened for getMe were closed
