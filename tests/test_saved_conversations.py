"""Saved conversations end to end: /new keeps the old one, /chats switches back with a button,
/clear forgets only the current one; per scope in groups, on every store backend, across restarts."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from botcore_history.saved import TITLE_PROMPT
from botcore_shared_stores.testing import wipe
from botcore_usage import Settings as UsageSettings
from botcore_usage import windows

from botcore.store import make_store
from botcore.testing.fake_openai import ChatReply, ErrorReply, FakeOpenAI
from botcore.testing.fake_telegram import BotMessage, FakeTelegram
from botcore.testing.harness import BotHarness
from botcore.testing.stores import server_store, server_url

H = {"path": "h.sqlite3"}
NO_STREAM = {"chat": {"stream": False}}
NOT_YOURS = "This button is for someone else."


def said(openai_server: FakeOpenAI) -> list[str]:
    """What the model was last sent of the conversation (no system prompt)."""
    return [m["content"] for m in openai_server.last_chat_messages() if m["role"] != "system"]


def titles(message: BotMessage) -> list[str]:
    return [b["text"] for b in message.buttons]


async def press(telegram: FakeTelegram, keyboard: BotMessage, title: str, **who: Any) -> str:
    """Press the button titled `title` and return the bot's answer in that chat."""
    await telegram.send_callback_query(keyboard, button_text=title, **who)
    return (await telegram.next_message(keyboard.chat_id)).text


async def new_then_back(telegram: FakeTelegram, openai_server: FakeOpenAI) -> None:
    """The story every backend must tell alike."""
    await telegram.reply_to("my name is Ann")
    started = await telegram.reply_to("/new")
    assert started.text == (
        "A new conversation begins. The previous one is kept: /chats goes back to it."
    )
    await telegram.reply_to("what is my name?")
    assert said(openai_server) == ["what is my name?"]  # the new one starts empty
    listed = await telegram.reply_to("/chats")
    assert titles(listed) == ["• what is my name?", "my name is Ann"]
    assert await press(telegram, listed, "my name is Ann") == (
        "Back to “my name is Ann”: I remember where we were."
    )
    await telegram.reply_to("and what is my name?")
    assert said(openai_server) == [
        "my name is Ann",
        "echo: my name is Ann",
        "and what is my name?",
    ]


async def test_new_keeps_the_old_conversation_and_a_button_goes_back_to_it(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], store=H, settings=NO_STREAM)
    await new_then_back(telegram, openai_server)
    # /clear forgets the current conversation only: the other is still there.
    await telegram.reply_to("/clear")
    listed = await telegram.reply_to("/chats")
    assert titles(listed) == ["• New conversation", "what is my name?"]
    await press(telegram, listed, "what is my name?")
    await telegram.reply_to("again?")
    assert said(openai_server) == ["what is my name?", "echo: what is my name?", "again?"]


async def test_new_on_an_empty_conversation_keeps_no_empty_one(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    await start_bot(["history", "chat"], store=H, settings=NO_STREAM)
    assert (await telegram.reply_to("/new")).text == (
        "This conversation is new already: write me something."
    )
    assert (await telegram.reply_to("/chats")).text == (
        "There is only this conversation so far: /new starts another and keeps this one."
    )


async def test_the_list_and_the_choice_survive_a_restart(
    bot_harness: BotHarness, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    first = await bot_harness.start(["history", "chat"], store=H, settings=NO_STREAM)
    await telegram.reply_to("the code is 1234")
    await telegram.reply_to("/new")
    await telegram.reply_to("something else")
    await first.stop()
    await bot_harness.start(["history", "chat"], store=H, settings=NO_STREAM)
    listed = await telegram.reply_to("/chats")
    assert titles(listed) == ["• something else", "the code is 1234"]
    await press(telegram, listed, "the code is 1234")
    await telegram.reply_to("what was the code?")
    assert said(openai_server)[0] == "the code is 1234"


async def test_only_the_asker_may_press_and_forged_presses_change_nothing(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], store=H, settings=NO_STREAM)
    await telegram.reply_to("first topic")
    await telegram.reply_to("/new")
    await telegram.reply_to("second topic")
    listed = await telegram.reply_to("/chats")
    real = listed.buttons[1]["callback_data"]
    await telegram.send_callback_query(listed, button_text="first topic", user_id=8)
    for forged in ("chats:0", real[:-1] + "7", real.replace("b:", "b:x", 1)):
        await telegram.send_callback_query(listed, data=forged)
    await telegram.wait_for(lambda: len(telegram.callback_answers) == 4)
    answers = [a.get("text") for a in telegram.callback_answers]
    assert answers[0] == NOT_YOURS and set(answers[1:]) == {"This button no longer works."}
    await telegram.reply_to("still here?")
    assert said(openai_server)[0] == "second topic"  # nothing switched


async def test_old_conversations_past_max_saved_are_deleted(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"history": {"max_saved": 2}, **NO_STREAM}
    await start_bot(["history", "chat"], store=H, settings=settings)
    for topic in ("one", "two", "three"):
        await telegram.reply_to(topic)
        await telegram.reply_to("/new")
    listed = await telegram.reply_to("/chats")
    assert titles(listed) == ["• New conversation", "three"]


async def test_in_a_group_the_scope_rules_decide_whose_conversations_they_are(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"history": {"scope": "user"}, "chat": {"stream": False, "groups": "all"}}
    await start_bot(["history", "chat"], store=H, settings=settings)
    group: dict[str, Any] = {"chat_id": -100, "chat_type": "group"}
    ann: dict[str, Any] = {"user_id": 1, "first_name": "Ann", **group}
    bob: dict[str, Any] = {"user_id": 2, "first_name": "Bob", **group}
    await telegram.reply_to("Ann's old question", **ann)
    await telegram.reply_to("Bob's question", **bob)
    await telegram.reply_to("/new", **ann)
    await telegram.reply_to("and now?", **bob)  # Ann's /new is not Bob's
    assert said(openai_server) == [
        "Bob: Bob's question",
        "echo: Bob: Bob's question",
        "Bob: and now?",
    ]
    assert (await telegram.reply_to("/chats", **bob)).text.startswith("There is only")
    listed = await telegram.reply_to("/chats", **ann)
    assert titles(listed) == ["• New conversation", "Ann: Ann's old question"]
    await telegram.send_callback_query(listed, button_text="Ann: Ann's old question", user_id=2)
    await telegram.wait_for(lambda: len(telegram.callback_answers) == 1)
    assert telegram.callback_answers[0]["text"] == NOT_YOURS  # Bob cannot switch Ann's
    await press(telegram, listed, "Ann: Ann's old question", user_id=1)
    await telegram.reply_to("back", **ann)
    assert said(openai_server)[0] == "Ann: Ann's old question"


async def test_a_shared_group_conversation_is_set_aside_for_everyone(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"chat": {"stream": False, "groups": "all"}}
    await start_bot(["history", "chat"], store=H, settings=settings)
    group: dict[str, Any] = {"chat_id": -100, "chat_type": "group"}
    await telegram.reply_to("shared start", user_id=1, first_name="Ann", **group)
    await telegram.reply_to("/new", user_id=1, **group)
    await telegram.reply_to("fresh", user_id=2, first_name="Bob", **group)
    assert said(openai_server) == ["Bob: fresh"]


@pytest.mark.parametrize("backend", ["memory", "postgres", "redis"])
async def test_saved_conversations_work_on_every_backend(
    backend: str, start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    store: dict[str, Any] = {"backend": backend}
    if backend != "memory":
        store["url"] = server_url(backend)  # type: ignore[arg-type]
        server = server_store(backend)  # type: ignore[arg-type]
        await server.open()
        await wipe(server)
        await server.close()
    await start_bot(["history", "chat"], store=store, settings=NO_STREAM)
    await new_then_back(telegram, openai_server)


async def test_a_group_that_becomes_a_supergroup_keeps_its_saved_conversations(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"chat": {"stream": False, "groups": "all"}}
    running = await start_bot(["history", "chat"], store=H, settings=settings)
    group: dict[str, Any] = {"chat_id": -555, "chat_type": "group"}
    await telegram.reply_to("the old plan", **group)
    await telegram.reply_to("/new", **group)
    await telegram.reply_to("the new plan", **group)
    supergroup = await telegram.migrate_group(-555)
    for _ in range(100):  # the bot hears of the move from the service message
        if await running.app.store.get("history.chats", f"chat:{supergroup}"):
            break
        await asyncio.sleep(0.05)
    there: dict[str, Any] = {"chat_id": supergroup, "chat_type": "supergroup"}
    listed = await telegram.reply_to("/chats", **there)
    assert titles(listed) == ["• Test: the new plan", "Test: the old plan"]
    await press(telegram, listed, "Test: the old plan")
    await telegram.reply_to("go on", **there)
    assert said(openai_server) == ["Test: the old plan", "echo: Test: the old plan", "Test: go on"]


async def test_titles_by_the_model_when_configured_and_first_words_when_it_fails(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"history": {"title_model": "gpt-4o"}, **NO_STREAM}
    bot = await start_bot(["usage", "history", "chat"], store=H, settings=settings)
    small = {"prompt_tokens": 10, "completion_tokens": 1}
    openai_server.script_chat(ChatReply("ok", usage=small), ChatReply("ok", usage=small))
    title = ChatReply(
        " «Ann introduces herself» ", usage={"prompt_tokens": 500, "completion_tokens": 5}
    )
    openai_server.script_chat(title, when=TITLE_PROMPT)
    await telegram.reply_to("my name is Ann")
    await telegram.reply_to("/new")
    (asked,) = openai_server.chat_requests_with(TITLE_PROMPT)
    assert asked["model"] == "gpt-4o"
    assert "user: my name is Ann" in asked["messages"][-1]["content"]
    openai_server.script_chat(ChatReply(error=ErrorReply.content_policy()), when=TITLE_PROMPT)
    await telegram.reply_to("the weather today")
    await telegram.reply_to("/new")  # the model fails: the first words will do
    listed = await telegram.reply_to("/chats")
    assert titles(listed) == ["• New conversation", "the weather today", "Ann introduces herself"]
    await bot.stop()  # the title was metered like any chat call
    store = make_store(bot.runtime.config.store)
    await store.open()
    try:
        key = f"{windows(UsageSettings())[0].key}:u42:"
        totals = await store.totals("usage", key)
    finally:
        await store.close()
    assert totals[key + "chat.input_tokens"] == 10 + 500 + 10
    assert totals[key + "chat.output_tokens"] == 1 + 5 + 1


async def test_retention_applies_to_each_saved_conversation(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"history": {"max_age_days": 1, "max_messages": 4}, **NO_STREAM}
    await start_bot(["history", "chat"], store=H, settings=settings)
    await telegram.reply_to("ancient")
    await telegram.reply_to("/new")
    for text in ("one", "two", "three"):
        await telegram.reply_to(text)
    with sqlite3.connect("h.sqlite3") as db:  # the first conversation is two days old
        db.execute("UPDATE lists SET created = created - 2 * 86400 WHERE key = 'chat:42'")
    await telegram.reply_to("four")
    # max_messages: this conversation's own newest four ("one" and its echo are gone).
    assert said(openai_server) == ["two", "echo: two", "three", "echo: three", "four"]
    listed = await telegram.reply_to("/chats")
    # Its title was kept when it was set aside; the user hears that its messages are gone.
    assert await press(telegram, listed, "ancient") == (
        "Back to “ancient”: its messages are too old to be kept, so we start it afresh."
    )
    await telegram.reply_to("anything left?")
    assert said(openai_server) == ["anything left?"]


async def test_with_max_saved_1_new_does_not_claim_to_keep_the_old_one(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"history": {"max_saved": 1}, **NO_STREAM}
    await start_bot(["history", "chat"], store=H, settings=settings)
    await telegram.reply_to("my name is Ann")
    assert (await telegram.reply_to("/new")).text == (
        "A new conversation begins. The previous one is not kept: this bot keeps only the "
        "current conversation."
    )
    await telegram.reply_to("what is my name?")
    assert said(openai_server) == ["what is my name?"]
    assert (await telegram.reply_to("/chats")).text == (
        "This bot keeps only the current conversation: /new starts another in its place."
    )
    ru = await telegram.reply_to("/new", language_code="ru")
    assert ru.text == (
        "Начинаем новый разговор. Прежний не сохранён: этот бот хранит только текущий разговор."
    )


async def test_a_press_that_sets_nothing_aside_asks_the_model_for_no_title(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"history": {"title_model": "gpt-4o", "max_saved": 2}, **NO_STREAM}
    await start_bot(["history", "chat"], store=H, settings=settings)
    await telegram.reply_to("first topic")
    await telegram.reply_to("/new")
    await telegram.reply_to("second topic")
    stale = await telegram.reply_to("/chats")
    current = await telegram.reply_to("/chats")
    assert len(openai_server.chat_requests_with(TITLE_PROMPT)) == 1  # the first one's, at /new
    assert await press(telegram, current, "• second topic") == (
        "Back to “second topic”: I remember where we were."
    )
    await telegram.reply_to("/new")  # sets "second topic" aside (titled) and deletes the first
    await telegram.reply_to("third topic")
    assert len(openai_server.chat_requests_with(TITLE_PROMPT)) == 2
    assert await press(telegram, stale, stale.buttons[1]["text"]) == (
        "That conversation is no longer kept."
    )
    assert len(openai_server.chat_requests_with(TITLE_PROMPT)) == 2  # none for the stale press
