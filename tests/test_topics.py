"""Forum topics end to end: answers go to the asker's topic, each topic is its own conversation,
commands act on the topic, General and non-topic reply threads get no thread id; the same in a
private chat with topics."""

from __future__ import annotations

from typing import Any

import pytest

from botcore.stores.memory import MemoryStore
from botcore.testing.fake_openai import ChatReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram

FORUM = -1001234567890
USER = 42
A, B, C = 5, 7, 9
CHAT = {"stream": False, "groups": "all"}
NO_TOPIC = object()
"""What `thread_params` gives for a call sent without message_thread_id."""

PLACES: dict[str, dict[str, Any]] = {
    "forum": {"chat_id": FORUM, "chat_type": "supergroup"},
    "private": {},  # the user's private chat with the bot, given topics
}


@pytest.fixture(params=sorted(PLACES))
def place(request: pytest.FixtureRequest, telegram: FakeTelegram) -> dict[str, Any]:
    """A forum supergroup, or a private chat with topics, with topics A and B."""
    where = PLACES[request.param]
    telegram.make_forum(where.get("chat_id", USER), topics={A: "Cats", B: "Dogs"})
    return where


def chat_of(where: dict[str, Any]) -> int:
    return int(where.get("chat_id", USER))


def user_texts(messages: list[dict[str, Any]]) -> list[str]:
    """The user messages of a model request, without the speaker's name groups add."""
    texts = [m["content"] for m in messages if m["role"] == "user"]
    return [t.removeprefix("Test: ") for t in texts]


def thread_params(telegram: FakeTelegram, method: str, chat_id: int) -> list[object]:
    """The message_thread_id of every `method` call to the chat (NO_TOPIC where none was sent):
    the fake also follows a reply into its topic, so the parameter itself is what is checked."""
    return [
        call.params.get("message_thread_id", NO_TOPIC)
        for call in telegram.calls(method)
        if str(call.params.get("chat_id")) == str(chat_id)
    ]


async def test_each_topic_is_answered_in_it_and_is_its_own_conversation(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, place: dict[str, Any]
) -> None:
    await start_bot(["history", "chat"], settings={"chat": CHAT})
    chat = chat_of(place)
    reply = await telegram.reply_to("cats purr", thread_id=A, **place)
    speaker = "" if not place else "Test: "  # the chat plugin names the speaker in groups
    assert (reply.text, reply.thread_id) == (f"echo: {speaker}cats purr", A)
    reply = await telegram.reply_to("dogs bark", thread_id=B, **place)
    assert reply.thread_id == B
    reply = await telegram.reply_to("what do cats do?", thread_id=A, **place)
    assert reply.thread_id == A
    assert user_texts(openai_server.last_chat_messages()) == ["cats purr", "what do cats do?"]
    reply = await telegram.reply_to("and dogs?", thread_id=B, **place)
    assert reply.thread_id == B
    assert user_texts(openai_server.last_chat_messages()) == ["dogs bark", "and dogs?"]
    assert thread_params(telegram, "sendMessage", chat) == [A, B, A, B]


async def test_clear_and_retry_act_on_the_topics_conversation(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, place: dict[str, Any]
) -> None:
    await start_bot(["history", "chat"], settings={"chat": CHAT})
    await telegram.reply_to("a first", thread_id=A, **place)
    await telegram.reply_to("b first", thread_id=B, **place)
    openai_server.script_chat("a bad answer")
    assert (await telegram.reply_to("a second", thread_id=A, **place)).text == "a bad answer"
    await telegram.reply_to("b second", thread_id=B, **place)

    openai_server.script_chat("a better answer")
    retried = await telegram.reply_to("/retry", thread_id=A, **place)
    assert (retried.text, retried.thread_id) == ("a better answer", A)
    assert user_texts(openai_server.last_chat_messages()) == ["a first", "a second"]

    cleared = await telegram.reply_to("/clear", thread_id=A, **place)
    assert (cleared.text, cleared.thread_id) == ("Done: I have forgotten our conversation.", A)
    await telegram.reply_to("a again", thread_id=A, **place)
    assert user_texts(openai_server.last_chat_messages()) == ["a again"]
    await telegram.reply_to("b third", thread_id=B, **place)
    assert user_texts(openai_server.last_chat_messages()) == [
        "b first",
        "b second",
        "b third",
    ]


async def test_help_replies_in_the_topic(
    start_bot, telegram: FakeTelegram, place: dict[str, Any]
) -> None:
    await start_bot(["history"])
    reply = await telegram.reply_to("/help", thread_id=B, **place)
    assert "/clear" in reply.text and reply.thread_id == B
    assert thread_params(telegram, "sendMessage", chat_of(place)) == [B]


async def test_topics_can_share_one_conversation(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, place: dict[str, Any]
) -> None:
    await start_bot(
        ["history", "chat"], settings={"chat": CHAT, "history": {"topic_scope": "chat"}}
    )
    await telegram.reply_to("cats purr", thread_id=A, **place)
    reply = await telegram.reply_to("dogs bark", thread_id=B, **place)
    assert reply.thread_id == B  # shared memory, but still answered where asked
    assert user_texts(openai_server.last_chat_messages()) == ["cats purr", "dogs bark"]


async def test_general_is_answered_without_a_thread_id(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings={"chat": CHAT})
    telegram.make_forum(FORUM, topics={A: "Cats"})
    forum = {"chat_id": FORUM, "chat_type": "supergroup"}
    first = await telegram.reply_to("hello General", **forum)
    assert first.thread_id is None
    # A reply in General carries its reply thread's id, without is_topic_message: no topic.
    sent = await telegram.send_message("and a reply", reply_to_message_id=first.message_id, **forum)
    assert "message_thread_id" in sent and "is_topic_message" not in sent
    second = await telegram.next_message(FORUM)
    await telegram.wait_for(lambda: second.text == "echo: Test: and a reply")
    assert second.thread_id is None
    assert user_texts(openai_server.last_chat_messages()) == ["hello General", "and a reply"]
    await telegram.reply_to("in the topic", thread_id=A, **forum)
    assert user_texts(openai_server.last_chat_messages()) == ["in the topic"]
    assert thread_params(telegram, "sendMessage", FORUM) == [NO_TOPIC, NO_TOPIC, A]


async def test_a_reply_in_a_supergroup_without_topics_stays_in_the_chat(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """Telegram's trap: a reply in a plain supergroup carries a message_thread_id that is no
    topic; sending to it fails, and it must not split the conversation."""
    await start_bot(["history", "chat"], settings={"chat": CHAT})
    group = {"chat_id": -100777, "chat_type": "supergroup"}
    first = await telegram.reply_to("remember 7", **group)
    sent = await telegram.send_message(
        "what number?", reply_to_message_id=first.message_id, **group
    )
    assert sent["message_thread_id"] and "is_topic_message" not in sent
    second = await telegram.next_message(-100777)
    await telegram.wait_for(lambda: second.text == "echo: Test: what number?")
    assert second.thread_id is None
    assert user_texts(openai_server.last_chat_messages()) == ["remember 7", "what number?"]
    assert thread_params(telegram, "sendMessage", -100777) == [NO_TOPIC, NO_TOPIC]


async def test_a_streamed_answer_and_its_edits_stay_in_the_topic(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, place: dict[str, Any]
) -> None:
    await start_bot(
        ["history", "chat"],
        bot={"stream_edit_interval": 0.1, "group_stream_edit_interval": 0.1},
        settings={"chat": {"groups": "all"}},
    )
    chat = chat_of(place)
    openai_server.latency = 0.4  # long enough for "typing…" to show
    openai_server.script_chat(
        ChatReply(text="one two three four " * 10, first_chunk_delay=0.05, total_duration=1.0)
    )
    reply = await telegram.reply_to("tell me", thread_id=A, settle=0.3, **place)
    await telegram.wait_for(lambda: reply.plain == ("one two three four " * 10).strip())
    assert reply.thread_id == A
    if chat == FORUM:
        assert reply.edits  # streamed in a group: shown, then edited in place
    else:  # a private chat streams as drafts, shown in the topic too
        drafts = telegram.drafts(chat)
        assert len(drafts) >= 2 and {d.thread_id for d in drafts} == {A}
        assert set(thread_params(telegram, "sendMessageDraft", chat)) == {A}
        assert not telegram.calls("editMessageText")
    assert [m.thread_id for m in telegram.bot_messages(chat)] == [A]
    assert thread_params(telegram, "sendMessage", chat) == [A]
    assert set(thread_params(telegram, "sendChatAction", chat)) == {A}


async def test_a_drawing_lands_in_the_topic(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, place: dict[str, Any]
) -> None:
    await start_bot(["image"])
    openai_server.latency = 0.6  # long enough for the "sending a photo…" action to show
    reply = await telegram.reply_to("/image a cat in a hat", thread_id=B, **place)
    assert (reply.kind, reply.thread_id) == ("photo", B)
    chat = chat_of(place)
    assert thread_params(telegram, "sendPhoto", chat) == [B]
    assert set(thread_params(telegram, "sendChatAction", chat)) == {B}


async def test_cancel_in_one_topic_leaves_the_others_answer(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, place: dict[str, Any]
) -> None:
    await start_bot(["history", "chat"], settings={"chat": {"groups": "all"}})
    chat = chat_of(place)
    whole = "bark " * 30
    openai_server.script_chat(
        ChatReply(text="word " * 200, first_chunk_delay=0.05, total_duration=30),
        ChatReply(text=whole, first_chunk_delay=0.05, total_duration=1.5),
    )
    await telegram.send_message("a long story", thread_id=A, **place)
    # A's answer is showing: a message and edits in a forum, a draft in a private chat.
    await telegram.wait_for(lambda: in_topic(telegram, chat, A) or telegram.drafts(chat, A))
    await telegram.send_message("a short one", thread_id=B, **place)
    # B is answered whole while A still streams: topics do not queue behind each other.
    await telegram.wait_for(
        lambda: [m.plain for m in in_topic(telegram, chat, B)] == [whole.strip()], timeout=10
    )
    await telegram.send_message("/cancel", thread_id=A, **place)
    await telegram.wait_for(lambda: "Stopped." in [m.text for m in in_topic(telegram, chat, A)])
    await telegram.wait_for(
        lambda: any((m.text or "").endswith(" …") for m in in_topic(telegram, chat, A))
    )
    assert [m.plain for m in in_topic(telegram, chat, B)] == [whole.strip()]


def in_topic(telegram: FakeTelegram, chat: int, topic: int) -> list[Any]:
    """The bot's messages in one topic of the chat, oldest first."""
    return [m for m in telegram.bot_messages(chat) if m.thread_id == topic]


async def test_cancel_between_instances_names_the_topic(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a store that several instances share, a turn's lock and a /cancel's signal belong to
    the topic: one process stands for them all here (a store's signals reach the sender too)."""
    monkeypatch.setattr(MemoryStore, "shared", True)
    running = await start_bot(
        ["chat"], store={"backend": "memory"}, settings={"chat": {"groups": "all"}}
    )
    signals: list[dict[str, Any]] = []
    await running.app.store.listen(signals.append)
    telegram.make_forum(FORUM, topics={A: "Cats", B: "Dogs", C: "Quiet"})
    forum = {"chat_id": FORUM, "chat_type": "supergroup"}
    whole = "bark " * 30
    openai_server.script_chat(
        ChatReply(text="word " * 200, first_chunk_delay=0.05, total_duration=30),
        ChatReply(text=whole, first_chunk_delay=0.05, total_duration=1.5),
    )
    await telegram.send_message("a long story", thread_id=A, **forum)
    in_a = await telegram.next_message(FORUM)
    await telegram.send_message("a short one", thread_id=B, **forum)
    in_b = await telegram.next_message(FORUM)  # B's store lock is not A's
    # Nothing runs in C: the other instances are asked to stop C's turn, and no other.
    nothing = await telegram.reply_to("/cancel", thread_id=C, **forum)
    assert nothing.text.startswith("Nothing to stop") and nothing.thread_id == C
    assert [(s["kind"], s["chat"], s["topic"]) for s in signals] == [("cancel", FORUM, C)]
    assert not (in_a.text or "").endswith("…")
    # Another instance's /cancel in topic A arrives (from the asker: it names them): A's turn
    # stops, B's goes on.
    await running.app.store.broadcast(
        {"kind": "cancel", "chat": FORUM, "topic": A, "before": 10**9, "sender": USER}
    )
    await telegram.wait_for(lambda: (in_a.text or "").endswith(" …"))
    await telegram.wait_for(lambda: in_b.plain == whole.strip(), timeout=10)
    assert not in_b.plain.endswith("…")


async def test_a_message_in_a_topic_the_bot_opened_is_not_a_reply_to_it(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """Telegram sends a topic's messages as replies to its "topic created" message: in a topic
    the bot created, that must not make every message one addressed to the bot."""
    running = await start_bot(["chat"], settings={"chat": {"stream": False}})
    telegram.make_forum(FORUM, topics={A: "Cats"})
    chat = {"id": FORUM, "type": "supergroup", "title": "Forum", "is_forum": True}
    opened = {
        "message_id": A,
        "date": 1,
        "chat": chat,
        "from": {"id": running.runtime.bot_id, "is_bot": True, "first_name": "Bot"},
        "message_thread_id": A,
        "is_topic_message": True,
        "forum_topic_created": {"name": "Cats", "icon_color": 7322096},
    }
    await telegram.send_update(
        {
            "message": {
                "message_id": 50,
                "date": 2,
                "chat": chat,
                "from": {"id": USER, "is_bot": False, "first_name": "Test"},
                "message_thread_id": A,
                "is_topic_message": True,
                "reply_to_message": opened,
                "text": "just chatting among ourselves",
            }
        }
    )
    # The topic's turns go in order: what comes next answers /help, nothing came before it.
    reply = await telegram.reply_to("/help", chat_id=FORUM, thread_id=A)
    assert "/start" in reply.text and reply.thread_id == A
    assert openai_server.chat_requests == []


async def test_a_new_message_stops_only_its_topics_answer(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(
        ["chat"], bot={"new_message_cancels": True}, settings={"chat": {"groups": "all"}}
    )
    telegram.make_forum(FORUM, topics={A: "Cats", B: "Dogs"})
    forum = {"chat_id": FORUM, "chat_type": "supergroup"}
    openai_server.script_chat(
        ChatReply(text="word " * 200, first_chunk_delay=0.05, total_duration=30), "in B", "in A"
    )
    await telegram.send_message("a long story", thread_id=A, **forum)
    story = await telegram.next_message(FORUM)
    other = await telegram.reply_to("meanwhile in B", thread_id=B, **forum)
    assert (other.text, other.thread_id) == ("in B", B)
    assert not (story.text or "").endswith("…")  # a message in B leaves A's answer alone
    again = await telegram.reply_to("never mind", thread_id=A, **forum)
    assert (again.text, again.thread_id) == ("in A", A)
    await telegram.wait_for(lambda: (story.text or "").endswith(" …"))
