"""Summaries end to end: a conversation that outgrows what the model is sent is summarised by the
model, the summary is kept in place of what it covers, /clear forgets both, and a failing summary
falls back to leaving the oldest messages out."""

from __future__ import annotations

import sqlite3
from typing import Any

from botcore_chat import SUMMARY_PROMPT
from botcore_usage import Settings as UsageSettings
from botcore_usage import windows

from botcore.store import make_store
from botcore.testing.fake_openai import ChatReply, ErrorReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram

H = {"path": "h.sqlite3"}
SETTINGS: dict[str, Any] = {"chat": {"stream": False, "context_messages": 4}}
SUMMARY = "The user is called Ann and counts to three."
HEAD = "A summary of the earlier part of this conversation:\n"


def sent(openai_server: FakeOpenAI) -> list[str]:
    """What the last answer's request held after the system prompt."""
    return [m["content"] for m in openai_server.last_chat_messages()[1:]]


def stored() -> list[str]:
    with sqlite3.connect("h.sqlite3") as db:
        return [row[0] for row in db.execute("SELECT item FROM lists ORDER BY id")]


async def count_to_three(telegram: FakeTelegram) -> None:
    for text in ("my name is Ann", "two", "three"):
        await telegram.reply_to(text)


async def test_an_outgrown_history_is_summarised_in_place_of_its_older_part(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], store=H, settings=SETTINGS)
    openai_server.script_chat(SUMMARY, when=SUMMARY_PROMPT)
    await count_to_three(telegram)
    assert openai_server.chat_requests_with(SUMMARY_PROMPT) == []  # four messages fit
    await telegram.reply_to("four")  # six before it: more than context_messages
    (asked,) = openai_server.chat_requests_with(SUMMARY_PROMPT)
    assert asked["model"] == "gpt-4o-mini"
    transcript = asked["messages"][-1]["content"]
    for line in ("user: my name is Ann", "assistant: echo: my name is Ann", "user: two"):
        assert line in transcript  # all of the older part, beyond what was loaded too
    assert "three" not in transcript  # the newest are kept as they are
    assert sent(openai_server) == [HEAD + SUMMARY, "three", "echo: three", "four"]
    assert len(stored()) == 4  # three, echo: three, four, echo: four: the rest is the summary
    await telegram.reply_to("five")
    assert sent(openai_server) == [
        HEAD + SUMMARY,
        "three",
        "echo: three",
        "four",
        "echo: four",
        "five",
    ]
    assert len(openai_server.chat_requests_with(SUMMARY_PROMPT)) == 1  # seldom, not every turn
    # /clear forgets the summary with the messages.
    await telegram.reply_to("/clear")
    await telegram.reply_to("who am I?")
    assert sent(openai_server) == ["who am I?"]


async def test_a_summary_is_summarised_again_with_what_follows(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], store=H, settings=SETTINGS)
    openai_server.script_chat(SUMMARY, "Ann counted to six.", when=SUMMARY_PROMPT)
    await count_to_three(telegram)
    for text in ("four", "five", "six"):
        await telegram.reply_to(text)
    second = openai_server.chat_requests_with(SUMMARY_PROMPT)[1]
    assert f"The summary so far:\n{SUMMARY}" in second["messages"][-1]["content"]
    assert sent(openai_server)[0] == HEAD + "Ann counted to six."


async def test_a_failing_summary_never_fails_the_answer(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], store=H, settings=SETTINGS)
    await count_to_three(telegram)
    refused = ChatReply(error=ErrorReply.content_policy())
    openai_server.script_chat(refused, when=SUMMARY_PROMPT)
    assert (await telegram.reply_to("four")).text == "echo: four"
    assert len(openai_server.chat_requests_with(SUMMARY_PROMPT)) == 1
    # As without summaries: the oldest were left out of the request, and nothing was deleted.
    assert sent(openai_server) == ["two", "echo: two", "three", "echo: three", "four"]
    assert len(stored()) == 8
    # The next turn tries again, and this time it works.
    openai_server.script_chat(SUMMARY, when=SUMMARY_PROMPT)
    await telegram.reply_to("five")
    assert sent(openai_server)[0] == HEAD + SUMMARY


async def test_summaries_are_metered_like_any_call(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    bot = await start_bot(["usage", "history", "chat"], store=H, settings=SETTINGS)
    small = {"prompt_tokens": 10, "completion_tokens": 1}
    openai_server.script_chat(*(ChatReply(f"ok {n}", usage=small) for n in range(4)))
    await count_to_three(telegram)
    usage = {"prompt_tokens": 1000, "completion_tokens": 70}
    openai_server.script_chat(ChatReply(SUMMARY, usage=usage), when=SUMMARY_PROMPT)
    await telegram.reply_to("four")
    assert len(openai_server.chat_requests_with(SUMMARY_PROMPT)) == 1
    await bot.stop()
    store = make_store(bot.runtime.config.store)
    await store.open()
    try:
        key = f"{windows(UsageSettings())[0].key}:u42:"
        totals = await store.totals("usage", key)
    finally:
        await store.close()
    assert totals[key + "chat.input_tokens"] == 4 * 10 + 1000
    assert totals[key + "chat.output_tokens"] == 4 * 1 + 70


async def test_summaries_off_leave_the_oldest_out_as_before(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"chat": {**SETTINGS["chat"], "summarize": False}}
    await start_bot(["history", "chat"], store=H, settings=settings)
    await count_to_three(telegram)
    await telegram.reply_to("four")
    assert openai_server.chat_requests_with(SUMMARY_PROMPT) == []
    assert sent(openai_server) == ["two", "echo: two", "three", "echo: three", "four"]


async def test_a_streamed_answer_is_summarised_for_too(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], store=H, settings={"chat": {"context_messages": 4}})
    openai_server.script_chat(SUMMARY, when=SUMMARY_PROMPT)
    await count_to_three(telegram)
    answer = await telegram.reply_to("four", settle=0.3)
    await telegram.wait_for(lambda: answer.text == "echo: four")
    (asked,) = openai_server.chat_requests_with(SUMMARY_PROMPT)
    assert not asked.get("stream")
    assert openai_server.chat_requests[-1]["stream"] is True
    assert sent(openai_server)[0] == HEAD + SUMMARY


async def test_a_summary_request_fits_the_context_after_summaries_failed_for_a_while(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """While summaries fail (here: a summary model the endpoint does not know), the history
    keeps growing; the request that finally summarises it must still fit the model's context,
    or it fails too, on every turn from then on, and the conversation is never summarised."""
    chat = {"stream": False, "context_messages": 4, "context_tokens": 1000, "summary_tokens": 100}
    await start_bot(["history", "chat"], store=H, settings={"chat": chat})
    unknown = ErrorReply(
        status=404,
        message="The model `nope` does not exist or you do not have access to it.",
        type="invalid_request_error",
        code="model_not_found",
    )
    openai_server.script_chat(*[ChatReply(error=unknown)] * 10, when=SUMMARY_PROMPT)
    for n in range(12):
        answer = await telegram.reply_to(f"message {n}: " + "word " * 120)
        assert (answer.text or "").startswith(f"echo: message {n}")  # the answer never waits on it
    assert len(openai_server.chat_requests_with(SUMMARY_PROMPT)) == 10
    openai_server.script_chat(SUMMARY, when=SUMMARY_PROMPT)
    await telegram.reply_to("and now?")
    asked = openai_server.chat_requests_with(SUMMARY_PROMPT)[-1]
    transcript = asked["messages"][-1]["content"]
    size = sum(
        max(len(m["content"]) // 3, len(m["content"].encode()) // 4) + 4 for m in asked["messages"]
    )
    assert size + 100 <= 1000  # the summary's own tokens included
    assert "message 9" in transcript  # the newest of what it covers...
    assert "message 0" not in transcript  # ...the oldest, left out of answers long ago, go
    assert sent(openai_server)[0] == HEAD + SUMMARY


async def test_a_reasoning_models_thinking_is_no_part_of_the_summary(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """A reasoning model served raw writes its thinking into the content, in a leading <think>
    block: the summary kept (and sent with every later request) is what follows it."""
    await start_bot(["history", "chat"], store=H, settings=SETTINGS)
    thought = "The user wants a summary. Let me list what was said, then write it briefly."
    written = ChatReply(text=SUMMARY, reasoning=thought, reasoning_style="think")
    # Thinking that used up all of the summary's tokens: no summary (the oldest are left out).
    unclosed = ChatReply(
        text="", reasoning=thought, reasoning_style="think", finish_reason="length"
    )
    openai_server.script_chat(written, unclosed, when=SUMMARY_PROMPT)
    await count_to_three(telegram)
    assert (await telegram.reply_to("four")).text == "echo: four"
    assert sent(openai_server)[0] == HEAD + SUMMARY
    for text in ("five", "six"):
        await telegram.reply_to(text)
    assert len(openai_server.chat_requests_with(SUMMARY_PROMPT)) == 2
    assert all("Let me list" not in str(m["content"]) for m in openai_server.last_chat_messages())
    assert sent(openai_server)[0] == HEAD + SUMMARY  # the one before, kept
