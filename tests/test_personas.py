"""/mode end to end: personas from bot.toml, the choice in the store, custom prompts and who may."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from botcore.config import ConfigError
from botcore.runtime import Runtime
from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness

DEFAULT_PROMPT = "You are the default assistant."
PERSONAS: dict[str, Any] = {
    "coder": {"prompt": "You are a senior Python reviewer.", "description": "code reviews"},
    "pirate": "Answer like a pirate.",
}
CHAT = {"stream": False, "system_prompt": DEFAULT_PROMPT, "personas": PERSONAS}


def system_prompt(openai_server: FakeOpenAI) -> str:
    first = openai_server.last_chat_messages()[0]
    assert first["role"] == "system"
    return str(first["content"])


async def test_mode_lists_picks_and_the_model_gets_the_prompt(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings={"history": {}, "chat": CHAT})
    listing = (await telegram.reply_to("/mode")).text or ""
    assert listing.splitlines() == [
        "Modes (now: default):",
        "• default — the standard assistant",
        "• coder — code reviews",
        "• pirate — Answer like a pirate.",
        "Pick one with /mode <name>.",
    ]  # no custom hint: custom prompts are off and user 42 is no admin
    await telegram.reply_to("hello")
    assert system_prompt(openai_server) == DEFAULT_PROMPT

    reply = await telegram.reply_to("/mode Pirate")
    assert reply.text == "Mode: pirate. It applies from your next message."
    await telegram.reply_to("hello again")
    assert system_prompt(openai_server) == "Answer like a pirate."
    assert "(now: pirate)" in ((await telegram.reply_to("/mode")).text or "")

    # /clear forgets the conversation, not the mode.
    await telegram.reply_to("/clear")
    await telegram.reply_to("fresh start")
    messages = openai_server.last_chat_messages()
    assert messages == [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": "fresh start"},
    ]
    # Another user still has the default.
    await telegram.reply_to("hi", user_id=7)
    assert system_prompt(openai_server) == DEFAULT_PROMPT

    assert (await telegram.reply_to("/mode default")).text == (
        "Mode: default. It applies from your next message."
    )
    await telegram.reply_to("and now?")
    assert system_prompt(openai_server) == DEFAULT_PROMPT


async def test_unknown_mode_names_the_choices_in_the_users_language(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings={"chat": CHAT})
    reply = await telegram.reply_to("/mode wizard")
    assert reply.text == "There is no mode “wizard”. Available: default, coder, pirate."
    reply = await telegram.reply_to("/mode wizard", language_code="ru")
    assert reply.text == "Режима «wizard» нет. Доступны: default, coder, pirate."
    assert openai_server.chat_requests == []


async def test_the_mode_survives_a_restart_with_sqlite(
    bot_harness: BotHarness, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    store = {"backend": "sqlite", "path": "state.sqlite3"}
    first = await bot_harness.start(["chat"], store=store, settings={"chat": CHAT})
    await telegram.reply_to("/mode coder")
    await first.stop()
    await bot_harness.start(["chat"], store=store, settings={"chat": CHAT})
    await telegram.reply_to("review this")
    assert system_prompt(openai_server) == "You are a senior Python reviewer."


async def test_a_persona_removed_from_the_config_falls_back_to_the_default(
    bot_harness: BotHarness, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    first = await bot_harness.start(["chat"], settings={"chat": CHAT})
    await telegram.reply_to("/mode pirate")
    await first.stop()
    await bot_harness.start(["chat"], settings={"chat": {**CHAT, "personas": {}}})
    await telegram.reply_to("ahoy")
    assert system_prompt(openai_server) == DEFAULT_PROMPT
    assert "(now: default)" in ((await telegram.reply_to("/mode")).text or "")


async def test_custom_prompts_are_refused_unless_allowed(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], bot={"admins": [1]}, settings={"chat": CHAT})
    reply = await telegram.reply_to("/mode custom Be a cat.")
    assert reply.text == (
        "Custom instructions are turned off on this bot; pick one of the modes from /mode."
    )
    reply = await telegram.reply_to("/mode custom Be a cat.", language_code="ru")
    assert reply.text == "Свои инструкции в этом боте отключены; выберите режим из /mode."
    await telegram.reply_to("meow?")
    assert system_prompt(openai_server) == DEFAULT_PROMPT

    # A bot admin may.
    listing = (await telegram.reply_to("/mode", user_id=1)).text or ""
    assert listing.splitlines()[-1] == "Or give your own instructions: /mode custom <text>"
    reply = await telegram.reply_to("/mode custom Be a cat.", user_id=1)
    assert reply.text and reply.text.startswith("Done: I will follow your instructions")
    await telegram.reply_to("meow?", user_id=1)
    assert system_prompt(openai_server) == "Be a cat."
    assert "(now: custom)" in ((await telegram.reply_to("/mode", user_id=1)).text or "")


async def test_custom_prompts_when_everyone_may(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"chat": {**CHAT, "custom_personas": True, "custom_prompt_chars": 40}}
    await start_bot(["chat"], settings=settings)
    reply = await telegram.reply_to("/mode custom")
    assert reply.text and reply.text.startswith("Write your instructions after the command")
    reply = await telegram.reply_to("/mode custom " + "x" * 41)
    assert reply.text == "Your instructions are too long: at most 40 characters."
    await telegram.reply_to("/mode custom\nRhyme every answer.\nKeep it short.")
    await telegram.reply_to("how are you?")
    assert system_prompt(openai_server) == "Rhyme every answer.\nKeep it short."


async def test_in_groups_each_member_has_their_own_mode(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings={"chat": {**CHAT, "groups": "all"}})
    group: dict[str, Any] = {"chat_id": -100, "chat_type": "group"}
    await telegram.send_message("/mode pirate", user_id=1, **group)
    await telegram.next_message(-100)
    await telegram.send_message("hello", user_id=1, **group)
    await telegram.next_message(-100)
    assert system_prompt(openai_server) == "Answer like a pirate."
    await telegram.send_message("hello", user_id=2, **group)
    await telegram.next_message(-100)
    assert system_prompt(openai_server) == DEFAULT_PROMPT


@pytest.mark.parametrize("name", ["default", "custom", "Two Words"])
def test_reserved_or_malformed_persona_names_fail_start_up(
    bot_harness: BotHarness, name: str
) -> None:
    from botcore.config import Config, validate

    config = validate(
        Config, bot_harness.config_dict(["chat"], settings={"chat": {"personas": {name: "x"}}})
    )
    with pytest.raises(ConfigError, match=r"plugins\.chat\.personas"):
        asyncio.run(Runtime.create(config))
