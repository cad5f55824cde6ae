"""Native draft streaming end to end: private answers grow as sendMessageDraft updates and arrive
as final messages, groups and servers without drafts get throttled edits."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from botcore.testing.fake_openai import ChatReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram

HISTORY: dict[str, dict[str, object]] = {"history": {}}
STORY = "The quick brown fox jumps over the **lazy** dog, again and again and again, until dusk."
STORY_PLAIN = STORY.replace("**", "")
SLOW = ChatReply(text="word " * 200, first_chunk_delay=0.05, total_duration=30)


def user_texts(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "user"]


async def test_a_private_answer_grows_as_a_draft_then_arrives_once(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings=HISTORY)
    openai_server.script_chat(ChatReply(text=STORY, first_chunk_delay=0.1, total_duration=1.2))
    message = await telegram.reply_to("tell me a story", timeout=5, settle=0.3)
    assert message.text == STORY_PLAIN
    assert any(e["type"] == "bold" for e in message.entities)
    drafts = telegram.drafts(42)
    assert len(drafts) >= 2
    assert len({d.draft_id for d in drafts}) == 1 and drafts[0].draft_id != 0  # one per answer
    for earlier, later in itertools.pairwise(drafts):  # growing, over time
        assert later.time > earlier.time
        assert len(later.plain) > len(earlier.plain)
        assert later.plain.startswith(earlier.plain.rstrip())
    assert STORY_PLAIN.startswith(drafts[0].plain.rstrip()) and drafts[0].plain != STORY_PLAIN
    assert telegram.calls("editMessageText") == [] and not message.edits
    assert len(telegram.bot_messages(42)) == 1
    kinds = [entry.kind for entry in telegram.timeline(42)]
    assert kinds == ["draft"] * len(drafts) + ["message"]
    assert telegram.current_draft(42) is None  # the message replaced the draft
    # The next answer is a new draft.
    openai_server.script_chat(ChatReply(text=STORY, first_chunk_delay=0.1, total_duration=0.6))
    await telegram.reply_to("again", timeout=5, settle=0.3)
    assert len({d.draft_id for d in telegram.drafts(42)}) == 2


async def test_a_group_answer_still_streams_by_edits(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings={"chat": {"groups": "all"}})
    openai_server.script_chat(ChatReply(text=STORY, first_chunk_delay=0.1, total_duration=1.5))
    await telegram.send_message("a story please", chat_id=-5, chat_type="group")
    answer = await telegram.next_message(-5, timeout=5)
    await telegram.wait_for(lambda: answer.text == STORY_PLAIN, timeout=5)
    assert answer.edits  # shown early, then edited
    assert telegram.calls("sendMessageDraft") == []
    assert len(telegram.bot_messages(-5)) == 1


@pytest.mark.parametrize(
    ("status", "description"),
    [(404, "Not Found"), (400, "Bad Request: method is not available")],
    ids=["404", "400"],
)
async def test_a_server_without_drafts_gets_edits_and_is_asked_once(
    start_bot,
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
    status: int,
    description: str,
) -> None:
    caplog.set_level(logging.INFO, logger="botcore.delivery")
    await start_bot(["chat"])
    telegram.fail("sendMessageDraft", status=status, description=description, times=100)
    for question in ("one", "two"):
        if question == "two":
            # The user reads the answer before asking again, and the chat's flood budget (about
            # a message a second, which the first answer's message and edits spent) refills:
            # with none left, a preview that would start a message is dropped, not queued.
            await asyncio.sleep(2.5)
        openai_server.script_chat(ChatReply(text=STORY, first_chunk_delay=0.1, total_duration=1.2))
        await telegram.send_message(question)
        answer = await telegram.next_message(42, timeout=5)
        await telegram.wait_for(lambda: answer.text == STORY_PLAIN, timeout=5)  # noqa: B023
        assert answer.edits  # the first words at once, then edits, as before drafts
    assert len(telegram.calls("sendMessageDraft")) == 1  # refused once, never asked again
    assert telegram.drafts(42) == []
    noticed = [r for r in caplog.records if "has no drafts" in r.getMessage()]
    assert len(noticed) == 1 and noticed[0].levelno == logging.INFO


async def test_cancel_during_a_draft_leaves_what_was_shown_marked_as_stopped(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"])
    openai_server.script_chat(SLOW)
    await telegram.send_message("tell me a long story")
    await telegram.wait_for(lambda: len(telegram.drafts(42)) >= 2, timeout=5)
    answer = await telegram.reply_to("/cancel", timeout=3)
    assert (await telegram.next_message(42, timeout=3)).text == "Stopped."
    shown = telegram.drafts(42)[-1].plain
    assert answer.text is not None and answer.text.endswith(" …")
    assert answer.text.startswith(shown.strip())
    assert telegram.calls("editMessageText") == []
    # The question stays in history; no half answer is stored.
    assert (await telegram.reply_to("and now?", settle=0.3)).text == "echo: and now?"
    assert user_texts(openai_server.last_chat_messages()) == ["tell me a long story", "and now?"]


async def test_a_draft_cut_off_midway_stays_as_a_message_with_a_note(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings=HISTORY)
    openai_server.script_chat(
        ChatReply(
            chunks=["Part one. ", "Part two. ", "Part three."], chunk_delay=0.3, drop_after_chunks=2
        )
    )
    await telegram.send_message("go")
    shown = await telegram.next_message(42)
    notice = await telegram.next_message(42)
    assert telegram.drafts(42) and telegram.drafts(42)[0].plain.startswith("Part one.")
    assert shown.text == "Part one. Part two."
    assert notice.text == "The answer was cut off. Please try again."
    assert telegram.calls("editMessageText") == []
    assert (await telegram.reply_to("again")).text == "echo: again"


async def test_a_long_answer_sends_finished_pieces_while_the_draft_shows_the_rest(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"])
    words = [f"w{i:04d}" for i in range(2000)]  # 12 000 characters, no paragraph breaks
    text = " ".join(words)
    openai_server.script_chat(ChatReply(text=text, first_chunk_delay=0.1, total_duration=2.0))
    await telegram.send_message("a very long one")
    await telegram.wait_for(lambda: len(telegram.bot_messages(42)) >= 3, timeout=10)
    await telegram.wait_for(lambda: telegram.current_draft(42) is None, timeout=5)
    pieces = [m.text or "" for m in telegram.bot_messages(42)]
    assert len(pieces) == 3
    assert all(len(p) <= 4096 for p in pieces)
    assert " ".join(pieces).split() == words  # every word, none cut
    assert telegram.calls("editMessageText") == []
    # A finished piece went out while the answer was still being written, and the draft went
    # on with the rest (never more than one message's worth).
    timeline = telegram.timeline(42)
    first_message = next(i for i, e in enumerate(timeline) if e.kind == "message")
    later_drafts = [e for e in timeline[first_message:] if e.kind == "draft"]
    assert later_drafts
    assert all(not (e.text or "").startswith("w0000") for e in later_drafts)
    assert all(len(d.plain) <= 4096 for d in telegram.drafts(42))
