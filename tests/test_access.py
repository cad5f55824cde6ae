"""access and admin end to end: allow-lists, admin-only commands, plugins switched at run time,
and settings changed in chat that survive a restart and show in `botcore config`."""

from __future__ import annotations

import asyncio
import json
import logging
import tomllib
from pathlib import Path

import pytest
from botcore_access import Settings as Access

from botcore.cli import main
from botcore.store import make_store
from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness

ADMIN = 1
# What /plugins reports for first-party plugins: the version being released.
PYPROJECT = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
PRIVATE = {"access": {"open": False}, "chat": {"stream": False}}
REFUSED = "Sorry, this bot is private. Ask its owner for access and give them your id: 7."


async def test_a_refused_user_is_told_once_and_the_model_sees_nothing(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["access", "chat"], bot={"admins": [ADMIN]}, settings=PRIVATE)
    assert (await telegram.reply_to("/cancel", user_id=7)).text == REFUSED  # any message
    await telegram.send_message("hello", user_id=7)  # not answered again: no spam
    ru = await telegram.reply_to("привет", user_id=8, language_code="ru")
    assert (
        ru.text
        == "Извините, это закрытый бот. Попросите доступ у владельца и сообщите ему ваш id: 8."
    )
    assert openai_server.requests == []

    reply = await telegram.reply_to("/allow 7", user_id=ADMIN)
    assert reply.text == "User 7 may use the bot now."
    assert (await telegram.reply_to("hi", user_id=7)).text == "echo: hi"
    # Chat 7 is answered in order: "hello" got nothing between the refusal and the echo.
    assert [m.text for m in telegram.bot_messages(7)] == [REFUSED, "echo: hi"]
    assert [r["messages"][-1]["content"] for r in openai_server.chat_requests] == ["hi"]
    assert (await telegram.reply_to("hi", user_id=ADMIN)).text == "echo: hi"  # admins always


async def test_admin_commands_are_refused_to_others_in_private_and_groups(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["access", "admin", "usage"], bot={"admins": [ADMIN]})
    group = {"chat_id": -100, "chat_type": "supergroup"}
    for command in ("/allow 9", "/deny 9", "/plugins", "/disable access", "/budget 9 daily 1"):
        name = command.split()[0]
        expected = f"{name} is for the bot's admins only."
        assert (await telegram.reply_to(command, user_id=7)).text == expected
        assert (await telegram.reply_to(command, user_id=7, **group)).text == expected
    ru = await telegram.reply_to("/deny 9", user_id=7, language_code="ru")
    assert ru.text == "/deny — только для администраторов бота."
    user_help = (await telegram.reply_to("/help", user_id=7)).text or ""
    admin_help = (await telegram.reply_to("/help", user_id=ADMIN)).text or ""
    assert "/usage" in user_help and "/allow" not in user_help and "/budget" not in user_help
    for command in ("/allow", "/deny", "/plugins", "/enable", "/disable", "/budget"):
        assert command in admin_help
    calls = telegram.calls("setMyCommands")
    menu = [c for c in calls if not c.params.get("scope")][-1].params["commands"]
    assert "allow" not in str(menu) and "usage" in str(menu)
    admin_menus = [c for c in calls if (c.params.get("scope") or {}).get("chat_id") == ADMIN]
    assert "allow" in str(admin_menus[-1].params["commands"])  # the admin's own menu has them
    assert (await telegram.reply_to("/plugins", user_id=ADMIN, **group)).text.startswith("welcome")


async def test_groups_deny_and_reply_to_allow(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    app = (await start_bot(["access", "chat"], bot={"admins": [ADMIN]}, settings=PRIVATE)).app
    group = {"chat_id": -100, "chat_type": "supergroup"}
    await telegram.send_message("chatter not meant for the bot", user_id=7, **group)
    reply = await telegram.reply_to("/allow", user_id=ADMIN, **group)  # no id: this group
    assert reply.text == "Chat -100 may use the bot now."
    assert len(telegram.bot_messages(-100)) == 1  # the chatter got no answer
    assert (await telegram.reply_to("@botcore_test_bot hi", user_id=7, **group)).text == (
        "echo: Test: hi"
    )
    reply = await telegram.reply_to("/deny", user_id=ADMIN)  # no id, no reply, no group
    assert reply.text == (
        "Give an id: /deny 123456789 (a user) or -100123 (a group), "
        "or reply to the person's message with /deny."
    )
    # Replying /deny to someone's message blocks them, even in an allowed group.
    group_message = await telegram.send_message("@botcore_test_bot more", user_id=9, **group)
    await telegram.next_message(-100)
    reply = await telegram.reply_to(
        "/deny", user_id=ADMIN, reply_to_message_id=group_message["message_id"], **group
    )
    assert reply.text == "User 9 may no longer use the bot."
    assert app.settings(Access).blocked == [9]
    reply = await telegram.reply_to("@botcore_test_bot still there?", user_id=9, **group)
    assert reply.text == "Sorry, you may not use this bot."  # blocked, though the group is allowed
    assert (await telegram.reply_to("/start", user_id=7, **group)).text.startswith("Hi!")
    assert (await telegram.reply_to("/deny 1", user_id=ADMIN)).text == (
        "1 is an admin (bot.admins in bot.toml) and cannot be blocked."
    )


async def test_plugins_are_switched_off_and_on_at_run_time(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(
        ["admin", "chat", "image"], bot={"admins": [ADMIN]}, settings={"chat": {"stream": False}}
    )
    assert (await telegram.reply_to("/disable image", user_id=ADMIN)).text == (
        "image is off. /enable image switches it back on."
    )
    assert (await telegram.reply_to("/image a cat", user_id=7)).text == (
        "/image is switched off right now. Please try again later."
    )
    assert "/image" not in ((await telegram.reply_to("/help", user_id=7)).text or "")
    listing = (await telegram.reply_to("/plugins", user_id=ADMIN)).text or ""
    assert f"image {VERSION} — off (switched off by an admin) — /image" in listing
    assert f"chat {VERSION} — on" in listing
    await telegram.reply_to("/disable chat", user_id=ADMIN)
    assert (await telegram.reply_to("hello", user_id=7)).text == (
        "I only answer commands here. /help lists them."
    )
    assert openai_server.requests == []
    assert (await telegram.reply_to("/enable image", user_id=ADMIN)).text == "image is on."
    assert (await telegram.reply_to("/image a cat", user_id=7)).kind == "photo"
    await telegram.reply_to("/enable chat", user_id=ADMIN)
    assert (await telegram.reply_to("hello", user_id=7)).text == "echo: hello"
    assert (await telegram.reply_to("/disable admin", user_id=ADMIN)).text == (
        "admin cannot be switched off: it is needed to manage the bot."
    )
    assert (await telegram.reply_to("/disable imag", user_id=ADMIN)).text == (
        "There is no plugin 'imag' (did you mean 'image'?)."
    )


async def test_changes_survive_a_restart_and_show_in_botcore_config(
    bot_harness: BotHarness,
    telegram: FakeTelegram,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugins = ["access", "admin", "usage", "image"]
    kwargs = {"bot": {"admins": [ADMIN]}, "store": {"backend": "sqlite", "path": "bot.sqlite3"}}
    first = await bot_harness.start(plugins, **kwargs)
    for command, answer in (
        ("/deny 7", "User 7 may no longer use the bot."),
        ("/disable image", "image is off. /enable image switches it back on."),
        ("/budget 8 daily 0.5", "Budget of User 8, daily: cost $0.50."),
    ):
        assert (await telegram.reply_to(command, user_id=ADMIN)).text == answer
    await first.stop()
    store = make_store(first.runtime.config.store)  # a stale setting must not keep the bot down
    await store.open()
    await store.put("config", "plugins.access.remind_hours", "never")
    await store.close()

    second = await bot_harness.start(plugins, **kwargs)
    assert second.app.overrides.keys() == {
        "plugins.access.blocked",
        "plugins.admin.disabled",
        "plugins.usage.users.8.daily",
    }
    assert (await telegram.reply_to("/start", user_id=7)).text == "Sorry, you may not use this bot."
    assert (await telegram.reply_to("/image a cat", user_id=8)).text == (
        "/image is switched off right now. Please try again later."
    )
    assert second.app.plugin_state("image").state == "off"
    await second.stop()

    config = bot_harness.config_dict(plugins, **kwargs)
    toml = "\n".join(
        [
            "[bot]",
            f'token = "{config["bot"]["token"]}"',
            f"plugins = {json.dumps(plugins)}",
            f"admins = [{ADMIN}]",
            "[openai]",
            'api_key = "sk-secret-value"',
            "[store]",
            f'path = "{tmp_path / "bot.sqlite3"}"',
            "[plugins.access]",
            "users = [3]",
        ]
    )
    (tmp_path / "bot.toml").write_text(toml, encoding="utf-8")
    code = await asyncio.to_thread(main, ["config", "--config", str(tmp_path / "bot.toml")])
    out, err = capsys.readouterr()
    assert code == 0, err
    shown = json.loads(out)
    assert shown["plugins"]["access"]["users"] == [3]
    assert shown["plugins"]["access"]["blocked"] == [7]
    assert shown["plugins"]["admin"]["disabled"] == ["image"]
    assert shown["plugins"]["usage"]["users"] == {"8": {"daily": {"cost": 0.5}, "monthly": None}}
    assert shown["plugins"]["image"]["model"] == "dall-e-3"  # defaults are filled in
    assert shown["bot"]["token"] == shown["openai"]["api_key"] == "**********"
    assert config["bot"]["token"] not in out and "sk-secret-value" not in out
    assert "changed in chat: plugins.access.blocked" in err
    assert "changed in chat: plugins.admin.disabled" in err
    assert "ignoring the stored setting plugins.access.remind_hours" in caplog.text


async def test_enable_brings_back_a_plugin_the_breaker_switched_off(
    start_bot, telegram: FakeTelegram
) -> None:
    boom = "sample_plugins.boom"
    await start_bot(
        ["admin", boom],
        bot={"admins": [ADMIN], "breaker": {"failures": 2, "window": 60, "cooldown": 3600}},
    )
    for _ in range(2):
        await telegram.reply_to("/boom", user_id=5)
    unavailable = "This feature is temporarily unavailable. Please try again later."
    assert (await telegram.reply_to("/oops", user_id=5)).text == unavailable
    assert (await telegram.next_message(ADMIN)).text.startswith(f"⚠️ Plugin {boom} failed 2 times")
    reply = await telegram.reply_to(f"/enable {boom}", user_id=ADMIN)
    assert reply.text == f"{boom} is on."
    assert (await telegram.reply_to("/oops", user_id=5)).text.startswith("Sorry")


async def test_the_command_menu_follows_disable_and_enable_once_each(
    start_bot, telegram: FakeTelegram
) -> None:
    await start_bot(["admin", "history"], bot={"admins": [ADMIN]})

    def menus(scope: dict[str, object] | None = None) -> list[str]:
        return [
            " ".join(c["command"] for c in call.params["commands"])
            for call in telegram.calls("setMyCommands")
            if call.params.get("scope") == scope and not call.params.get("language_code")
        ]

    admin = {"type": "chat", "chat_id": ADMIN}
    assert menus() == ["start help cancel clear new chats"]
    assert menus(admin) == ["start help cancel plugins enable disable audit clear new chats"]
    reply = await telegram.reply_to("/disable history", user_id=ADMIN)
    assert reply.text == "history is off. /enable history switches it back on."
    await telegram.wait_for(lambda: len(menus(admin)) == 2)
    assert menus() == ["start help cancel clear new chats", "start help cancel"]
    assert menus(admin)[-1] == "start help cancel plugins enable disable audit"
    assert (await telegram.reply_to("/enable history", user_id=ADMIN)).text == "history is on."
    await telegram.wait_for(lambda: len(menus(admin)) == 3)
    assert (await telegram.reply_to("/plugins", user_id=ADMIN)).text  # the menu was set once
    assert menus() == [
        "start help cancel clear new chats",
        "start help cancel",
        "start help cancel clear new chats",
    ]
    assert menus(admin)[-1] == "start help cancel plugins enable disable audit clear new chats"


# Ways around a block (issue 16.11): edits, posting as a channel, anonymous admins.

BLOCKED = "Sorry, you may not use this bot."
GROUP = {"chat_id": -1001, "chat_type": "supergroup"}


async def test_a_blocked_users_edits_are_refused_like_messages_told_once(
    start_bot, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "botcore.updates")
    blocked = {"access": {"blocked": [7]}, "chat": {"stream": False}}
    await start_bot(["access", "chat"], bot={"admins": [ADMIN]}, settings=blocked)
    sent = await telegram.send_message("hello", user_id=7)
    assert (await telegram.next_message(7)).text == BLOCKED
    for n in range(3):
        sent = await telegram.edit_message(sent, f"hello {n}")

    def seen() -> int:  # turns the bot logged for chat 7: the message, then each edit
        return sum(r.name == "botcore.updates" and r.fields["chat_id"] == 7 for r in caplog.records)

    # A log line comes without a Bot API call to wake wait_for: look every 50 ms as well.
    await telegram.wait_for(
        lambda: seen() == 4 or len(telegram.bot_messages(7)) > 1, poll_interval=0.05
    )
    assert [m.text for m in telegram.bot_messages(7)] == [BLOCKED]  # told once, edits or not
    edits = [r.fields for r in caplog.records if r.name == "botcore.updates"][1:]
    assert [(f["kind"], f["outcome"]) for f in edits] == [("edited", "ignored")] * 3
    # Once allowed, an edit gets the usual hint.
    assert (
        await telegram.reply_to("/allow 7", user_id=ADMIN)
    ).text == "User 7 may use the bot now."
    await telegram.edit_message(sent, "hello again")
    assert (await telegram.next_message(7)).text == (
        "I only see new messages: please send the corrected text as a new message."
    )


async def test_a_channel_posting_in_a_group_is_a_sender_of_its_own(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"chat": {"stream": False, "groups": "all"}, "access": {"remind_hours": 0}}
    app = (await start_bot(["access", "chat"], bot={"admins": [ADMIN]}, settings=settings)).app
    post = await telegram.send_message("hi", sender_chat=-1002, user_id=7, **GROUP)
    assert (await telegram.next_message(-1001)).text == "echo: Channel: hi"
    # /deny in reply to the channel's post blocks the channel: not the group (its `from` is
    # Telegram's Channel_Bot placeholder, a bot), not every channel (they all share that id).
    reply = await telegram.reply_to(
        "/deny", user_id=ADMIN, reply_to_message_id=post["message_id"], **GROUP
    )
    assert reply.text == "Chat -1002 may no longer use the bot."
    assert app.settings(Access).blocked == [-1002]
    assert (await telegram.reply_to("/start", sender_chat=-1002, **GROUP)).text == BLOCKED
    await telegram.send_message("hi again", sender_chat=-1002, **GROUP)  # told once: silence
    other = await telegram.reply_to("hi", sender_chat=-1003, **GROUP)
    assert other.text == "echo: Channel: hi"
    assert (await telegram.reply_to("hi", user_id=7, **GROUP)).text == "echo: Test: hi"
    assert [m.text for m in telegram.bot_messages(-1001)].count(BLOCKED) == 1
    # /deny by id works the same, and /allow lets the channel back in.
    assert (await telegram.reply_to("/allow -1002", user_id=ADMIN)).text == (
        "Chat -1002 may use the bot now."
    )
    assert (await telegram.reply_to("hey", sender_chat=-1002, **GROUP)).text == "echo: Channel: hey"
    await telegram.reply_to("/deny -1003", user_id=ADMIN)
    assert (await telegram.reply_to("/start", sender_chat=-1003, **GROUP)).text == BLOCKED


async def test_a_private_bot_names_the_chat_a_channel_or_anonymous_admin_speaks_for(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {**PRIVATE, "chat": {"stream": False, "groups": "all"}}
    await start_bot(["access", "chat"], bot={"admins": [ADMIN]}, settings=settings)
    refused = "Sorry, this bot is private. Ask its owner for access and give them your id: {}."
    # An anonymous admin speaks for the group itself: the id to allow is the group's.
    assert (await telegram.reply_to("/start", sender_chat=-1001, **GROUP)).text == refused.format(
        -1001
    )
    assert (await telegram.reply_to("/start", sender_chat=-1002, **GROUP)).text == refused.format(
        -1002
    )
    await telegram.reply_to("/allow -1002", user_id=ADMIN)
    assert (await telegram.reply_to("hi", sender_chat=-1002, **GROUP)).text == "echo: Channel: hi"
    # Allowing the channel is not allowing the group (nor the other anonymous senders).
    await telegram.send_message("/start", sender_chat=-1001, **GROUP)
    assert (await telegram.reply_to("/start", sender_chat=-1003, **GROUP)).text == refused.format(
        -1003
    )
    await telegram.reply_to("/allow -1001", user_id=ADMIN)
    assert (await telegram.reply_to("hi", sender_chat=-1001, **GROUP)).text == "echo: Group: hi"
    assert openai_server.chat_requests  # the allowed ones reached the model
