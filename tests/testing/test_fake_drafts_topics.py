"""The fake Telegram's sendMessageDraft and forum topics, driven by the real python-telegram-bot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from telegram import Bot, Message, MessageEntity, ReplyParameters
from telegram.error import BadRequest

from botcore.testing.fake_telegram import FakeTelegram

TOKEN = "123456:TEST-TOKEN"
FORUM = -1001000000042


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url) as tg_bot:
        yield tg_bot


def as_message(data: dict[str, Any], bot: Bot) -> Message:
    message = Message.de_json(data, bot)
    assert message is not None
    return message


# --------------------------------------------------------------------------- drafts


async def test_a_draft_is_shown_parsed_and_returns_true(fake: FakeTelegram, bot: Bot) -> None:
    assert await bot.send_message_draft(42, draft_id=7, text="Hel") is True
    assert await bot.send_message_draft(42, draft_id=7, text="<b>Hello</b>", parse_mode="HTML")
    assert await bot.send_message_draft(42, draft_id=7) is True  # "Thinking..." (Bot API 10.0)
    shown = fake.drafts(42)
    assert [(d.draft_id, d.text, d.plain) for d in shown] == [
        (7, "Hel", "Hel"),
        (7, "<b>Hello</b>", "Hello"),
        (7, "", ""),
    ]
    assert shown[1].entities == [{"offset": 0, "length": 5, "type": "bold"}]
    assert shown[0].time <= shown[1].time <= shown[2].time
    entities = [MessageEntity(MessageEntity.ITALIC, 0, 2)]
    assert await bot.send_message_draft(42, draft_id=8, text="Hi there", entities=entities)
    assert fake.drafts(42)[-1].entities == [{"type": "italic", "offset": 0, "length": 2}]
    current = fake.current_draft(42)
    assert current is not None and current.draft_id == 8


async def test_a_draft_is_validated_like_a_message(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message_draft(42, draft_id=1, text="x" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message_draft(42, draft_id=1, text="<b>open", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)draft_id"):
        await bot.send_message_draft(42, draft_id=0, text="zero")
    async with aiohttp.ClientSession() as http:
        url = f"{fake.base_url}{TOKEN}/sendMessageDraft"
        async with http.post(url, json={"chat_id": 42, "text": "no id"}) as response:
            assert response.status == 400
    assert await bot.send_message_draft(42, draft_id=1, text="x" * 4096)
    assert len(fake.drafts(42)) == 1


async def test_drafts_are_for_private_chats_only(fake: FakeTelegram, bot: Bot) -> None:
    await fake.send_message("hi all", chat_id=-100, chat_type="group")
    with pytest.raises(BadRequest, match="Textdraft_peer_invalid"):
        await bot.send_message_draft(-100, draft_id=1, text="no")
    failed = fake.calls("sendMessageDraft")[-1]
    assert failed.status == 400
    assert failed.response["description"] == "Bad Request: TEXTDRAFT_PEER_INVALID"
    assert fake.drafts(-100) == []


async def test_the_message_replaces_the_draft_and_the_timeline_shows_it_all(
    fake: FakeTelegram, bot: Bot
) -> None:
    await bot.send_message_draft(42, draft_id=3, text="The answer")
    await bot.send_message_draft(42, draft_id=3, text="The answer is")
    assert fake.current_draft(42) is not None
    sent = await bot.send_message(42, "The answer is *42*", parse_mode="MarkdownV2")
    assert fake.current_draft(42) is None  # superseded by the message
    await sent.edit_text("The answer is 42, surely")
    timeline = fake.timeline(42)
    assert [(entry.kind, entry.text) for entry in timeline] == [
        ("draft", "The answer"),
        ("draft", "The answer is"),
        ("message", "The answer is 42"),
        ("edit", "The answer is 42, surely"),
    ]
    assert timeline[2].message_id == sent.message_id and timeline[0].draft_id == 3
    assert [t.time for t in timeline] == sorted(t.time for t in timeline)
    fake.reset()
    assert fake.drafts(42) == [] and fake.timeline(42) == []


# --------------------------------------------------------------------------- forum supergroups


async def test_a_forum_and_its_topics(fake: FakeTelegram, bot: Bot) -> None:
    assert fake.make_forum(FORUM, topics={5: "Cats", 9: "Dogs"}) == {5: "Cats", 9: "Dogs"}
    chat = await bot.get_chat(FORUM)
    assert chat.type == "supergroup" and chat.is_forum is True
    in_topic = as_message(await fake.send_message("meow", chat_id=FORUM, thread_id=5), bot)
    assert (in_topic.message_thread_id, in_topic.is_topic_message) == (5, True)
    assert in_topic.chat.is_forum is True
    in_general = as_message(await fake.send_message("hello", chat_id=FORUM), bot)
    assert in_general.message_thread_id is None and not in_general.is_topic_message
    # A new topic's id comes from the chat's message ids, after the existing ones.
    assert in_topic.message_id > 9


async def test_the_bot_writes_to_general_or_to_a_topic(fake: FakeTelegram, bot: Bot) -> None:
    fake.make_forum(FORUM, topics={5: "Cats"})
    general = await bot.send_message(FORUM, "to everyone")
    assert general.message_thread_id is None and not general.is_topic_message
    cats = await bot.send_message(FORUM, "to cat people", message_thread_id=5)
    assert (cats.message_thread_id, cats.is_topic_message) == (5, True)
    assert [m.thread_id for m in fake.bot_messages(FORUM)] == [None, 5]
    await bot.send_chat_action(FORUM, "typing", message_thread_id=5)
    for unknown in (77, 1):  # 1 is General: Telegram refuses it as a thread id
        with pytest.raises(BadRequest, match="Message thread not found"):
            await bot.send_message(FORUM, "lost", message_thread_id=unknown)
    assert len(fake.bot_messages(FORUM)) == 2


async def test_a_reply_goes_to_the_askers_topic(fake: FakeTelegram, bot: Bot) -> None:
    asked = as_message(
        await fake.send_message("question?", chat_id=FORUM, chat_type="supergroup", thread_id=5),
        bot,
    )
    assert fake.forum_topics(FORUM) == {5: "Topic 5"}  # made a forum on the fly
    answer = await asked.reply_text("answer")  # PTB passes the topic on
    assert answer.message_thread_id == 5
    # A reply that names no thread lands in the replied message's topic, as Telegram does.
    bare = await bot.send_message(
        FORUM, "also", reply_parameters=ReplyParameters(message_id=asked.message_id)
    )
    assert bare.is_topic_message and fake.bot_messages(FORUM)[-1].thread_id == 5
    # The user's follow-up reply to the bot stays in the topic too.
    follow = as_message(
        await fake.send_message("thanks", chat_id=FORUM, reply_to_message_id=answer.message_id),
        bot,
    )
    assert (follow.message_thread_id, follow.is_topic_message) == (5, True)


async def test_a_reply_in_general_carries_a_thread_that_is_no_topic(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.make_forum(FORUM)
    root = await bot.send_message(FORUM, "poll: tea or coffee?")
    reply = as_message(
        await fake.send_message("tea", chat_id=FORUM, reply_to_message_id=root.message_id), bot
    )
    assert reply.message_thread_id == root.message_id and not reply.is_topic_message
    # Echoing that id is the classic mistake; PTB's reply_text knows better.
    with pytest.raises(BadRequest, match="Message thread not found"):
        await bot.send_message(FORUM, "noted", message_thread_id=reply.message_thread_id)
    noted = await reply.reply_text("noted")
    assert noted.message_thread_id is None and fake.bot_messages(FORUM)[-1].thread_id is None


async def test_create_and_delete_a_topic(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match="not a forum"):
        await bot.create_forum_topic(-1001000000001, "News")
    fake.make_forum(FORUM)
    topic = await bot.create_forum_topic(FORUM, "News")
    assert topic.name == "News" and fake.forum_topics(FORUM) == {topic.message_thread_id: "News"}
    sent = await bot.send_message(FORUM, "first!", message_thread_id=topic.message_thread_id)
    assert sent.is_topic_message
    assert await bot.delete_forum_topic(FORUM, topic.message_thread_id)
    with pytest.raises(BadRequest, match="Message thread not found"):
        await bot.send_message(FORUM, "late", message_thread_id=topic.message_thread_id)


async def test_basic_groups_have_no_topics(fake: FakeTelegram) -> None:
    await fake.send_message("hi", chat_id=-100, chat_type="group")
    with pytest.raises(ValueError, match="no topics"):
        await fake.send_message("in a topic?", chat_id=-100, chat_type="group", thread_id=3)


# --------------------------------------------------------------------------- private chats with topics


async def test_private_chats_with_topics(fake: FakeTelegram, bot: Bot) -> None:
    assert (await bot.get_me()).has_topics_enabled is False
    fake.make_forum(42, topics={3: "Trip to Rome"})
    assert (await bot.get_me()).has_topics_enabled is True
    asked = as_message(await fake.send_message("flights?", thread_id=3), bot)
    assert (asked.chat.type, asked.message_thread_id, asked.is_topic_message) == (
        "private",
        3,
        True,
    )
    # Drafts are per chat and topic: the final message in topic 3 replaces only topic 3's.
    await bot.send_message_draft(42, draft_id=1, text="Looking", message_thread_id=3)
    await bot.send_message_draft(42, draft_id=1, text="Main chat draft")
    with pytest.raises(BadRequest, match="Message thread not found"):
        await bot.send_message_draft(42, draft_id=1, text="nowhere", message_thread_id=4)
    answer = await asked.reply_text("Two flights found")
    assert answer.message_thread_id == 3
    assert fake.current_draft(42, thread_id=3) is None
    main = fake.current_draft(42)
    assert main is not None and main.text == "Main chat draft"
    assert [(e.kind, e.thread_id) for e in fake.timeline(42, thread_id=3)] == [
        ("draft", 3),
        ("message", 3),
    ]
    topic = await bot.create_forum_topic(42, "Hotels")
    assert fake.forum_topics(42)[topic.message_thread_id] == "Hotels"


async def test_creating_a_topic_in_a_private_chat_needs_topic_mode(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Bot_forum_create_forbidden"):
        await bot.create_forum_topic(42, "Hotels")
