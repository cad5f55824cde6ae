"""The core end to end: the real bot, polling the fake Telegram server over HTTP."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import aiohttp
import pytest

from botcore.config import ConfigError
from botcore.testing.fake_telegram import FakeTelegram

BOOM = "sample_plugins.boom"
ECHO = "sample_plugins.echo"


async def test_start_lists_commands_of_enabled_plugins(start_bot, telegram: FakeTelegram) -> None:
    await start_bot([ECHO, "history"])
    reply = await telegram.reply_to("/start")
    text = reply.text or ""
    assert text.startswith("Hi! I'm a bot built on botcore.")
    for line in (
        "/start — Start the bot",
        "/help — List the commands",
        "/clear — Forget our conversation",
        "/long — A very long answer",
    ):
        assert line in text
    assert "/image" not in text


async def test_help_in_russian_for_a_russian_user(start_bot, telegram: FakeTelegram) -> None:
    await start_bot(["history"])
    reply = await telegram.reply_to("/help", language_code="ru")
    assert (reply.text or "").startswith("Привет! Я бот на botcore.")
    assert "/clear — Забыть наш разговор" in (reply.text or "")


async def test_commands_menu_is_registered_per_language(start_bot, telegram: FakeTelegram) -> None:
    await start_bot(["history"])
    assert [c["command"] for c in telegram.commands[("default", None)]] == [
        "start",
        "help",
        "cancel",
        "clear",
        "new",
        "chats",
    ]
    ru = {c["command"]: c["description"] for c in telegram.commands[("default", "ru")]}
    assert ru["clear"] == "Забыть наш разговор"
    en = {c["command"]: c["description"] for c in telegram.commands[("default", "en")]}
    assert en["clear"] == "Forget our conversation"


async def test_unknown_command_and_other_bots_commands(start_bot, telegram: FakeTelegram) -> None:
    await start_bot([])
    reply = await telegram.reply_to("/nosuch")
    assert reply.text == "I don't know the command /nosuch. /help lists what I can do."
    # In a group, a command meant for another bot is not ours to answer; ours is.
    await telegram.send_message("/help@other_bot", chat_id=-100, chat_type="supergroup")
    reply = await telegram.reply_to("/help@botcore_test_bot", chat_id=-100, chat_type="supergroup")
    assert (reply.text or "").startswith("Hi!")
    assert len(telegram.bot_messages(-100)) == 1


async def test_plain_text_without_a_handler_gets_a_hint(start_bot, telegram: FakeTelegram) -> None:
    await start_bot([])
    reply = await telegram.reply_to("hello")
    assert reply.text == "I only answer commands here. /help lists them."
    await telegram.send_photo(b"\x89PNG fake")
    reply = await telegram.next_message(42)
    assert reply.text == "I can't handle this kind of message. /help lists what I can do."


async def test_a_plugin_that_raises_is_isolated(
    start_bot, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    await start_bot([BOOM, ECHO])
    reply = await telegram.reply_to("/boom")
    assert reply.text == "Could not process the request, please try again later."
    reply = await telegram.reply_to("/boom", language_code="ru", user_id=7)
    assert reply.text == "Не получилось обработать запрос, попробуйте позже"
    assert "secret internal detail" not in " ".join(m.text or "" for m in telegram.bot_messages(42))
    failures = [
        r for r in caplog.records if "plugin sample_plugins.boom failed in /boom" in r.getMessage()
    ]
    assert len(failures) == 2 and "(update " in failures[0].getMessage()
    # The bot keeps serving, and other plugins still answer.
    assert (await telegram.reply_to("hi")).text == "echo: hi"
    # A pre_message that raises does not stop the other plugins from answering.
    assert (await telegram.reply_to("explode in pre")).text == "echo: explode in pre"
    assert any("failed in pre_message" in r.getMessage() for r in caplog.records)
    # A handler that returns something that is not a reply is a plugin failure, not a crash.
    assert (
        await telegram.reply_to("/weird")
    ).text == "Could not process the request, please try again later."
    # UserError shows the plugin's own message.
    assert (await telegram.reply_to("/oops")).text == "Sorry, that did not work: try /boom instead."


async def test_misspelled_hook_stops_startup(start_bot) -> None:
    with pytest.raises(ConfigError, match=r"plugin 'sample_plugins.typo': .*register_comands"):
        await start_bot(["sample_plugins.typo"])


async def test_long_text_is_split_without_breaking_code(start_bot, telegram: FakeTelegram) -> None:
    await start_bot([ECHO])
    await telegram.send_message("/long")
    await telegram.wait_for(
        lambda: any("the end" in (m.text or "") for m in telegram.bot_messages(42))
    )
    messages = telegram.bot_messages(42)
    assert len(messages) >= 3
    assert all(len((m.text or "").encode("utf-16-le")) // 2 <= 4096 for m in messages)
    text = "".join(m.text or "" for m in messages)
    assert text.count("line ") == 150 and text.count("print(") == 80
    # Every piece of the code block is still formatted as code.
    pre_pieces = [m for m in messages if any(e["type"] == "pre" for e in m.entities)]
    assert pre_pieces and all("print(" in (m.text or "") for m in pre_pieces)
    assert sum(1 for m in messages if "print(" in (m.text or "")) == len(pre_pieces)


async def test_entities_refused_falls_back_to_plain_text(start_bot, telegram: FakeTelegram) -> None:
    await start_bot([ECHO])
    telegram.fail(
        "sendMessage", status=400, description="Bad Request: can't parse entities: bad offset"
    )
    reply = await telegram.reply_to("/md")
    assert reply.text == "bold and code"
    assert reply.entities == []
    assert len(telegram.calls("sendMessage")) == 2


async def test_flood_control_is_waited_out(start_bot, telegram: FakeTelegram) -> None:
    await start_bot([ECHO])
    telegram.fail("sendMessage", status=429, retry_after=1)
    started = time.monotonic()
    reply = await telegram.reply_to("hello", timeout=10)
    assert reply.text == "echo: hello"
    assert time.monotonic() - started >= 1.0


async def test_chats_run_concurrently_and_each_chat_in_order(
    start_bot, telegram: FakeTelegram
) -> None:
    await start_bot([ECHO])
    await telegram.send_message("/slow 1.5", user_id=1)
    await telegram.send_message("after slow", user_id=1)
    started = time.monotonic()
    reply = await telegram.reply_to("quick", user_id=2)
    assert reply.text == "echo: quick"
    assert time.monotonic() - started < 1.0  # not stuck behind chat 1's slow turn
    first = await telegram.next_message(1, timeout=5)
    second = await telegram.next_message(1, timeout=5)
    assert [first.text, second.text] == ["slept 1.5", "echo: after slow"]


async def test_stream_is_shown_as_a_draft_then_sent_as_the_final_text(
    start_bot, telegram: FakeTelegram
) -> None:
    await start_bot([ECHO])
    await telegram.send_message("/stream alpha beta gamma delta")
    message = await telegram.next_message(42)
    assert message.text == "alpha beta gamma delta"
    drafts = [d.plain for d in telegram.drafts(42)]
    assert drafts, "nothing was shown while streaming"
    assert drafts[0] != message.text and message.text.startswith(drafts[0].rstrip())
    assert not message.edits
    assert len(telegram.bot_messages(42)) == 1


async def test_stream_is_shown_then_edited_where_drafts_are_refused(
    start_bot, telegram: FakeTelegram
) -> None:
    await start_bot([ECHO])
    telegram.fail("sendMessageDraft", status=404, description="Not Found")
    await telegram.send_message("/stream alpha beta gamma delta")
    message = await telegram.next_message(42)
    await telegram.wait_for(lambda: message.text == "alpha beta gamma delta")
    assert message.edits, "the message was never edited while streaming"
    assert len(telegram.bot_messages(42)) == 1


async def test_stream_failure_keeps_the_partial_answer(start_bot, telegram: FakeTelegram) -> None:
    await start_bot([ECHO])
    await telegram.send_message("/stream alpha beta fail")
    first = await telegram.next_message(42)
    error = await telegram.next_message(42)
    assert first.text == "alpha beta"
    assert error.text == "the stream failed"


async def test_blocked_user_does_not_break_the_bot(start_bot, telegram: FakeTelegram) -> None:
    await start_bot([ECHO])
    telegram.fail("sendMessage", status=403)
    await telegram.send_message("hello")
    await telegram.wait_for(lambda: len(telegram.calls("sendMessage")) == 1)
    assert (await telegram.reply_to("again")).text == "echo: again"


async def test_token_never_reaches_the_log(
    start_bot, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    from botcore.logs import RedactingFormatter

    caplog.set_level(logging.DEBUG)
    running = await start_bot([BOOM, ECHO])
    await telegram.reply_to("/boom")
    await telegram.reply_to("hi")
    formatter = RedactingFormatter("%(name)s %(message)s", running.runtime.config.secrets())
    secret = telegram.token.split(":")[1]
    raw = "\n".join(logging.Formatter("%(name)s %(message)s").format(r) for r in caplog.records)
    shown = "\n".join(formatter.format(r) for r in caplog.records)
    assert secret in raw  # httpx logs the URL at DEBUG: exactly what the formatter must catch
    assert secret not in shown


async def test_two_messages_in_one_chat_are_both_answered(
    start_bot, telegram: FakeTelegram
) -> None:
    await start_bot([ECHO])
    await asyncio.gather(telegram.send_message("one"), telegram.send_message("two"))
    first = await telegram.next_message(42)
    second = await telegram.next_message(42)
    assert {first.text, second.text} == {"echo: one", "echo: two"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_webhook_mode(start_bot, telegram: FakeTelegram) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/tg"
    running = await start_bot(
        [ECHO],
        bot={
            "mode": "webhook",
            "webhook": {"url": url, "listen": "127.0.0.1", "port": port, "path": "/tg"},
        },
    )
    assert telegram.webhook is not None and telegram.webhook["url"] == url
    secret = telegram.webhook.get("secret_token")
    assert secret and len(secret) >= 32  # derived from the bot token when bot.toml sets none
    assert telegram.token.split(":")[1] not in secret
    assert (await telegram.reply_to("over the webhook")).text == "echo: over the webhook"
    async with aiohttp.ClientSession() as session:
        update = {
            "update_id": 999,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": 5, "type": "private"},
                "text": "forged",
            },
        }
        async with session.post(url, json=update) as response:
            assert response.status == 403
        async with session.post(
            url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}
        ) as response:
            assert response.status == 403
        async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200 and await response.text() == "ok"
        await telegram.wait_for(lambda: running.runtime.health.updates == 1, poll_interval=0.05)
        async with session.get(f"http://127.0.0.1:{port}/healthz?verbose") as response:
            details = await response.json()
            assert details["mode"] == "webhook" and details["updates"] == 1
            assert details["telegram_ok_age_s"] is not None  # sendMessage answered
    await asyncio.sleep(0.2)
    assert telegram.bot_messages(5) == []


async def test_env_file_provides_secrets(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from botcore.cli import main

    monkeypatch.setenv(
        "TELEGRAM_BOT_TOKEN", "recorded so that teardown restores the original state"
    )
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("TELEGRAM_BOT_TOKEN=123456:FROM-dotenv\n")
    (tmp_path / "bot.toml").write_text('[bot]\ntoken = "${TELEGRAM_BOT_TOKEN}"\n')
    assert await asyncio.to_thread(main, ["check"]) == 0
    assert "ok: 1 plugins (welcome)" in capsys.readouterr().out


async def test_pre_message_answers_and_post_message_rewrites(
    start_bot, telegram: FakeTelegram
) -> None:
    await start_bot(["sample_plugins.shout", ECHO])
    assert (
        await telegram.reply_to("ping")
    ).text == "pong"  # answered in pre_message: echo never ran
    assert (await telegram.reply_to("shout this")).text == "ECHO: SHOUT THIS"
    assert (await telegram.reply_to("/sync a b")).text == "sync handler got 'a b'"


async def test_a_plugin_that_fails_to_import_is_named(start_bot) -> None:
    with pytest.raises(ConfigError) as info:
        await start_bot(["sample_plugins.broken_import"])
    assert str(info.value) == (
        "bot.plugins[0]: plugin 'sample_plugins.broken_import' failed to import: "
        "ModuleNotFoundError: No module named 'botcore_no_such_dependency'"
    )


def test_a_broken_installed_package_only_matters_when_asked_for(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botcore.plugins import Plugins

    dist = tmp_path / "botcore_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: botcore-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[botcore]\nbroken = botcore_broken_missing_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert Plugins(["chat", "history"]).names == ["welcome", "chat", "history"]
    with pytest.raises(
        ConfigError,
        match=r"^bot.plugins\[0\]: plugin 'broken' failed to import: ModuleNotFoundError",
    ):
        Plugins(["broken"])


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
async def test_both_http_stacks_send_text_and_files(
    start_bot, telegram: FakeTelegram, openai_server, http_client: str
) -> None:
    await start_bot(["image", ECHO], bot={"http_client": http_client})
    assert (await telegram.reply_to("héllo ✓ 🎲")).text == "echo: héllo ✓ 🎲"
    photo = await telegram.reply_to("/image a cat")
    assert photo.kind == "photo" and photo.data and photo.data.startswith(b"\x89PNG")
    reply = await telegram.reply_to("/md")
    assert [e["type"] for e in reply.entities] == ["bold", "code"]
