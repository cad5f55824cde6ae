"""Conversation control end to end: /cancel, a new message that stops the answer, order kept."""

from __future__ import annotations

import asyncio
import sqlite3

from botcore.stores.sqlite import SQLiteStore
from botcore.testing.fake_openai import ChatReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram

SLOW = ChatReply(text="word " * 200, first_chunk_delay=0.05, total_duration=30)
NOT_YOURS = (
    "The last question here was someone else's: only they can /retry it. "
    "Send your question again instead."
)
THEIRS = "This answer is for someone else: only they or a bot admin can stop it."
BLOCKED = "Sorry, you may not use this bot."


def user_texts(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "user"]


async def test_cancel_with_nothing_running(start_bot, telegram: FakeTelegram) -> None:
    await start_bot([])
    assert (await telegram.reply_to("/cancel")).text.startswith("Nothing to stop")
    assert (await telegram.reply_to("/cancel", language_code="ru")).text.startswith("Нечего")
    assert "/cancel — Stop the answer in progress" in (await telegram.reply_to("/help")).text


async def test_cancel_stops_a_streamed_answer_and_loses_nothing(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"])
    openai_server.script_chat(SLOW)
    await telegram.send_message("tell me a long story")
    await telegram.wait_for(lambda: bool(telegram.drafts(42)))  # the stream has started
    # What the draft showed stays as a message, marked as stopped, then the /cancel is answered
    # (not queued behind the 30 s answer).
    answer = await telegram.reply_to("/cancel", timeout=3)
    stopped = await telegram.next_message(42, timeout=3)
    assert stopped.text == "Stopped."
    assert (answer.text or "").endswith(" …")
    assert answer.text.startswith(telegram.drafts(42)[-1].plain.strip())
    assert answer.text.startswith("word word") and not answer.edits
    # The question stays in history; no half answer is stored; the chat goes on.
    assert (await telegram.reply_to("and now?", settle=0.3)).text == "echo: and now?"
    sent = openai_server.last_chat_messages()
    assert user_texts(sent) == ["tell me a long story", "and now?"]
    assert [m["role"] for m in sent] == ["system", "user", "user"]


async def test_cancel_in_a_group_for_another_bot_is_not_ours(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    running = await start_bot(["chat"], settings={"chat": {"groups": "all"}})
    openai_server.script_chat(SLOW)
    group = {"chat_id": -5, "chat_type": "group"}
    await telegram.send_message("a story please", **group)
    answer = await telegram.next_message(-5, timeout=5)
    await telegram.send_message("/cancel@some_other_bot", **group)
    await telegram.send_message(f"/cancel@{running.app.bot_username}", **group)
    assert (await telegram.next_message(-5, timeout=3)).text == "Stopped."
    await telegram.wait_for(lambda: (answer.text or "").endswith(" …"))


async def test_messages_wait_their_turn_and_none_is_lost(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings={"chat": {"stream": False}})
    openai_server.latency = 0.3
    for text in ("one", "two", "three"):
        await telegram.send_message(text)
    answers = [(await telegram.next_message(42, timeout=5)).text for _ in range(3)]
    assert answers == ["echo: one", "echo: two", "echo: three"]
    assert user_texts(openai_server.last_chat_messages()) == ["one", "two", "three"]


async def test_a_new_message_stops_the_answer_when_configured(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], bot={"new_message_cancels": True})
    openai_server.script_chat(SLOW)
    await telegram.send_message("a long one")
    await telegram.wait_for(lambda: bool(telegram.drafts(42)))  # the stream has started
    first = await telegram.reply_to("never mind, just say hi", timeout=5)
    second = await telegram.next_message(42, timeout=5)
    assert second.text == "echo: never mind, just say hi"
    assert (first.text or "").endswith(" …")
    assert (first.text or "").startswith("word word")
    assert user_texts(openai_server.last_chat_messages()) == [
        "a long one",
        "never mind, just say hi",
    ]


async def test_retry_asks_again_without_the_old_answer(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings={"chat": {"stream": False}})
    assert (await telegram.reply_to("/retry")).text.startswith("There is nothing to retry")
    await telegram.reply_to("first question")
    openai_server.script_chat("a bad answer")
    assert (await telegram.reply_to("name a colour")).text == "a bad answer"
    openai_server.script_chat("blue")
    assert (await telegram.reply_to("/retry")).text == "blue"
    assert openai_server.last_chat_messages()[1:] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "echo: first question"},
        {"role": "user", "content": "name a colour"},
    ]
    await telegram.reply_to("thanks")
    assert openai_server.last_chat_messages()[3:] == [
        {"role": "user", "content": "name a colour"},
        {"role": "assistant", "content": "blue"},
        {"role": "user", "content": "thanks"},
    ]


async def test_retry_in_a_group_keeps_the_speaker(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings={"chat": {"stream": False, "groups": "all"}})
    group = {"chat_id": -7, "chat_type": "group", "first_name": "Ann"}
    await telegram.reply_to("hello all", **group)
    assert (await telegram.reply_to("/retry", **group)).text == "echo: Ann: hello all"
    assert user_texts(openai_server.last_chat_messages()) == ["Ann: hello all"]


async def test_retry_in_a_shared_group_history_is_only_the_askers(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings={"chat": {"stream": False, "groups": "all"}})
    ann = {"chat_id": -7, "chat_type": "group", "first_name": "Ann", "user_id": 1}
    bob = {**ann, "first_name": "Bob", "user_id": 2}
    await telegram.reply_to("hello all", **ann)
    # Bob's /retry would re-ask Ann's question (and drop her answer): refused, nothing changes.
    assert (await telegram.reply_to("/retry", **bob)).text == NOT_YOURS
    assert len(openai_server.chat_requests) == 1
    # A channel and an anonymous admin are no more Ann than Bob is.
    assert (await telegram.reply_to("/retry", sender_chat=-1002, **ann)).text == NOT_YOURS
    assert (await telegram.reply_to("/retry", sender_chat=-7, **ann)).text == NOT_YOURS
    assert (await telegram.reply_to("/retry", **ann)).text == "echo: Ann: hello all"
    await telegram.reply_to("my turn", **bob)
    assert (await telegram.reply_to("/retry", **ann)).text == NOT_YOURS
    assert (await telegram.reply_to("/retry", **bob)).text == "echo: Bob: my turn"
    # The model never sees who is who beyond the names in the text.
    assert openai_server.last_chat_messages()[1:] == [
        {"role": "user", "content": "Ann: hello all"},
        {"role": "assistant", "content": "echo: Ann: hello all"},
        {"role": "user", "content": "Bob: my turn"},
    ]
    ru = await telegram.reply_to("/retry", language_code="ru", **ann)
    assert ru.text.startswith("Последний вопрос здесь задал кто-то другой")


async def test_in_a_group_only_the_asker_or_a_bot_admin_stops_an_answer(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"chat": {"groups": "all"}, "access": {"blocked": [9]}}
    await start_bot(["access", "chat"], bot={"admins": [1]}, settings=settings)
    group = {"chat_id": -5, "chat_type": "group"}
    openai_server.script_chat(SLOW, SLOW)
    await telegram.send_message("a story please", user_id=7, **group)
    answer = await telegram.next_message(-5, timeout=5)
    assert (await telegram.reply_to("/cancel", user_id=8, **group)).text == THEIRS
    assert (await telegram.reply_to("/cancel", sender_chat=-1002, **group)).text == THEIRS
    # A blocked member is told so (once), as for any message, and stops nothing.
    assert (await telegram.reply_to("/cancel", user_id=9, **group)).text == BLOCKED
    await telegram.send_message("/cancel", user_id=9, **group)
    assert (await telegram.reply_to("/cancel", user_id=7, **group)).text == "Stopped."
    assert (answer.text or "").endswith(" …")
    assert [m.text for m in telegram.bot_messages(-5)].count(BLOCKED) == 1
    # A bot admin may stop anyone's answer.
    await telegram.send_message("another story", user_id=8, **group)
    answer = await telegram.next_message(-5, timeout=5)
    assert (await telegram.reply_to("/cancel", user_id=1, **group)).text == "Stopped."
    assert (answer.text or "").endswith(" …")
    ru = await telegram.reply_to("/cancel", user_id=8, language_code="ru", **group)
    assert ru.text.startswith("Нечего")


async def test_a_new_message_stops_only_the_senders_own_answer(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(
        ["chat"], bot={"new_message_cancels": True}, settings={"chat": {"groups": "all"}}
    )
    group = {"chat_id": -5, "chat_type": "group"}
    openai_server.script_chat(ChatReply(text="word " * 20, total_duration=1))
    await telegram.send_message("a story please", user_id=7, **group)
    answer = await telegram.next_message(-5, timeout=5)
    await telegram.send_message("me too", user_id=8, **group)  # waits its turn, stops nothing
    after = await telegram.next_message(-5, timeout=5)
    assert after.text == "echo: Test: me too"
    assert (answer.text or "").strip() == ("word " * 20).strip()


async def test_an_idle_conversation_starts_afresh(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    running = await start_bot(
        ["history", "chat"],
        store={"path": "h.sqlite3"},
        settings={"history": {"idle_minutes": 60}, "chat": {"stream": False}},
    )
    await telegram.reply_to("old topic")
    await telegram.reply_to("still the old topic")
    assert user_texts(openai_server.last_chat_messages()) == ["old topic", "still the old topic"]
    store = running.app.store
    assert isinstance(store, SQLiteStore)
    await asyncio.to_thread(_age, store, 2 * 3600)
    await telegram.reply_to("new topic")
    assert user_texts(openai_server.last_chat_messages()) == ["new topic"]


def _age(store: SQLiteStore, seconds: float) -> None:
    """Pretend every stored message is `seconds` older (a second connection to the same file)."""
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE lists SET created = created - ?", (seconds,))
