"""Updates as they arrive, end to end: one python-telegram-bot cannot read, the same update_id
twice, a token revoked while the bot runs, a send that Telegram answers too late."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness

ECHO = "sample_plugins.echo"
TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def text_update(update_id: int, text: str, chat_id: int = 42, **drop: Any) -> dict[str, Any]:
    """A text message update as Telegram sends it (the `drop` keys left out of the message)."""
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": "private", "first_name": "Test"},
        "from": {"id": chat_id, "is_bot": False, "first_name": "Test", "language_code": "en"},
        "text": text,
    }
    return {"update_id": update_id, "message": {k: v for k, v in message.items() if k not in drop}}


async def test_an_update_python_telegram_bot_cannot_read_is_skipped_and_confirmed(
    start_bot: Any, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    """A message without `date` (PTB raises KeyError on it) used to fail its whole getUpdates
    batch, unconfirmed, fetched again at once for ever: no message was answered again."""
    caplog.set_level(logging.WARNING, logger="botcore")
    await start_bot([ECHO])
    poison = await telegram.send_update(text_update(500, "poison text", date=None))
    after = await telegram.send_update(text_update(501, "after"))
    assert (await telegram.next_message(42, timeout=10)).text == "echo: after"
    offsets = [c.params.get("offset") for c in telegram.calls("getUpdates")]
    assert max(o or 0 for o in offsets) > after["update_id"] > poison["update_id"]  # confirmed
    assert len(offsets) < 20  # not a tight loop of fetches (thousands before)
    skipped = [r.getMessage() for r in caplog.records if "skipped update" in r.getMessage()]
    assert skipped == [
        "skipped update 500 (message): python-telegram-bot cannot read it: KeyError: 'date'"
    ]
    assert "poison text" not in caplog.text
    assert [m.text for m in telegram.bot_messages(42)] == ["echo: after"]


async def test_a_webhook_update_delivered_twice_is_answered_once(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    """Telegram delivers an update again when it missed the answer to its POST: one reply."""
    port = free_port()
    await start_bot(
        [ECHO],
        bot={
            "mode": "webhook",
            "webhook": {
                "url": f"http://127.0.0.1:{port}/hook",
                "listen": "127.0.0.1",
                "port": port,
                "path": "/hook",
            },
        },
    )
    await telegram.send_update(text_update(700, "once"))
    await telegram.send_update(text_update(700, "once"))
    await telegram.send_update(text_update(701, "next"))
    await telegram.wait_for(lambda: len(telegram.webhook_deliveries) == 3, timeout=10)
    assert (await telegram.next_message(42, timeout=10)).text == "echo: once"
    assert (await telegram.next_message(42, timeout=10)).text == "echo: next"
    assert [m.text for m in telegram.bot_messages(42)] == ["echo: once", "echo: next"]


@pytest.mark.telegram_limits(None)
@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
async def test_a_send_answered_after_the_read_timeout_is_not_sent_again(
    start_bot: Any, telegram: FakeTelegram, http_client: str
) -> None:
    """Telegram acted on the sendMessage but answered after the 5 s read timeout: sending it
    again would show the answer twice (three times, with the retries)."""
    await start_bot([ECHO], bot={"http_client": http_client})
    telegram.slow("sendMessage", 6.0)
    await telegram.send_message("hello")
    await telegram.wait_for(lambda: bool(telegram.calls("sendMessage")), timeout=10)
    await telegram.send_message("later")  # answered after the slow one was given up on
    await telegram.wait_for(lambda: len(telegram.bot_messages(42)) >= 2, timeout=30)
    assert [m.text for m in telegram.bot_messages(42)] == ["echo: hello", "echo: later"]


async def test_a_token_revoked_mid_run_exits_3_in_one_line(
    telegram: FakeTelegram, bot_harness: BotHarness, bot_output: Any
) -> None:
    """Revoked with @BotFather while the bot polls: it used to stay up doing nothing, and end
    with a traceback (rc 1) at SIGTERM. Now it stops at once, like a token refused at start-up."""
    config = bot_harness.write_config("bot.toml", [ECHO], bot={"poll_timeout": 1})
    pythonpath = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    env = bot_harness.env(PYTHONPATH=pythonpath)
    bot = await bot_harness.spawn(config, env=env, stderr=asyncio.subprocess.PIPE)
    try:
        assert (await telegram.reply_to("hi", timeout=30)).text == "echo: hi"
        telegram.revoke_token()
        rc = await asyncio.wait_for(bot.wait(), 30)
    finally:
        if bot.returncode is None:
            bot.send_signal(signal.SIGTERM)
            await bot.wait()
        assert bot.stderr is not None
        output = (await bot.stderr.read()).decode()
        bot_output(output)
    assert rc == 3, output
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert errors == [
        "botcore: error: bot.token: Telegram no longer accepts the token (revoked or changed "
        "with @BotFather?); stopped"
    ], output
    assert "Traceback" not in output
