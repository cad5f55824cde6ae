"""Reasoning models end to end: thinking streamed as `reasoning_content`/`reasoning` deltas or as a
leading `<think>` block is shown collapsed above the answer (or hidden), never stored as the
answer, never read aloud, and metered."""

from __future__ import annotations

from typing import Any

import pytest

from botcore.delivery import REASONING_LIMIT, REASONING_MARK
from botcore.split import utf16_len
from botcore.testing.fake_openai import ChatReply, FakeOpenAI, ToolCall
from botcore.testing.fake_telegram import FakeTelegram

HISTORY: dict[str, Any] = {"history": {}}
THOUGHT = "The user asks about the sky. Rayleigh scattering favours short wavelengths."
ANSWER = "The sky is **blue** because air scatters blue light most."
SHOWN_ANSWER = "The sky is blue because air scatters blue light most."


def quotes(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entities if e["type"] == "expandable_blockquote"]


def quoted(text: str, entity: dict[str, Any]) -> str:
    """The text an entity covers (offsets in UTF-16 units)."""
    units = text.encode("utf-16-le")
    start, end = entity["offset"] * 2, (entity["offset"] + entity["length"]) * 2
    return units[start:end].decode("utf-16-le")


async def assistant_in_history(telegram: FakeTelegram, openai_server: FakeOpenAI) -> list[str]:
    """What the next request carries as the assistant's earlier answers."""
    await telegram.reply_to("thanks")
    return [m["content"] for m in openai_server.last_chat_messages() if m["role"] == "assistant"]


@pytest.mark.parametrize("style", ["reasoning_content", "reasoning"])
async def test_streamed_reasoning_is_shown_collapsed_above_the_answer(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, style: str
) -> None:
    await start_bot(["history", "chat"], settings=HISTORY)
    openai_server.script_chat(
        ChatReply(text=ANSWER, reasoning=THOUGHT, reasoning_style=style, chunk_delay=0.05)  # type: ignore[arg-type]
    )
    message = await telegram.reply_to("why is the sky blue?")
    assert message.plain == f"{REASONING_MARK}{THOUGHT}\n\n{SHOWN_ANSWER}"
    [quote] = quotes(message.entities)
    assert quoted(message.plain or "", quote) == REASONING_MARK + THOUGHT
    assert any(
        e["type"] == "bold" and quoted(message.plain or "", e) == "blue" for e in message.entities
    )
    # While it streamed, the reasoning was on screen before any of the answer.
    first = telegram.drafts(42)[0]
    assert quotes(first.entities) and "scatters" not in first.plain
    # The history keeps the answer only.
    assert await assistant_in_history(telegram, openai_server) == [ANSWER]


async def test_hidden_by_bot_toml_shows_only_the_answer(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings={**HISTORY, "chat": {"reasoning": "hide"}})
    openai_server.script_chat(ChatReply(text=ANSWER, reasoning=THOUGHT))
    message = await telegram.reply_to("why is the sky blue?")
    assert message.plain == SHOWN_ANSWER and not quotes(message.entities)
    assert all("Rayleigh" not in d.plain for d in telegram.drafts(42))
    assert await assistant_in_history(telegram, openai_server) == [ANSWER]


async def test_each_user_switches_reasoning_with_a_command(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"])
    assert (await telegram.reply_to("/reasoning")).text == (
        "The model's reasoning is shown. /reasoning hide hides it."
    )
    assert (await telegram.reply_to("/reasoning hide")).text == (
        "I will hide the model's reasoning and show only the answer."
    )
    openai_server.script_chat(ChatReply(text=ANSWER, reasoning=THOUGHT))
    assert (await telegram.reply_to("why?")).plain == SHOWN_ANSWER
    # Another user still sees it (the choice is per user).
    openai_server.script_chat(ChatReply(text=ANSWER, reasoning=THOUGHT))
    other = await telegram.reply_to("why?", user_id=7)
    assert quotes(other.entities) and THOUGHT in (other.plain or "")
    assert (await telegram.reply_to("/reasoning sometimes")).text == (
        "Use /reasoning show or /reasoning hide."
    )
    assert (await telegram.reply_to("/reasoning show")).text.startswith("I will show")
    openai_server.script_chat(ChatReply(text=ANSWER, reasoning=THOUGHT))
    assert quotes((await telegram.reply_to("why?")).entities)


async def test_a_think_block_cut_across_chunks(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings=HISTORY)
    chunks = ["\n<thi", "nk>\nI pon", "der the sky.</th", "ink>\n\nThe sky is ", "**blue**."]
    openai_server.script_chat(ChatReply(chunks=chunks))
    message = await telegram.reply_to("why?")
    assert message.plain == f"{REASONING_MARK}I ponder the sky.\n\nThe sky is blue."
    [quote] = quotes(message.entities)
    assert quoted(message.plain or "", quote) == f"{REASONING_MARK}I ponder the sky."
    assert await assistant_in_history(telegram, openai_server) == ["The sky is **blue**."]


async def test_the_fakes_think_style_and_text_that_only_mentions_the_tag(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings=HISTORY)
    openai_server.script_chat(ChatReply(text=ANSWER, reasoning=THOUGHT, reasoning_style="think"))
    message = await telegram.reply_to("why?")
    assert message.plain == f"{REASONING_MARK}{THOUGHT}\n\n{SHOWN_ANSWER}"
    # A <think> tag that does not open the answer is the answer's text.
    openai_server.script_chat(ChatReply(chunks=["Use <think> tags", " like <think>this</think>."]))
    message = await telegram.reply_to("how do I mark thoughts?")
    assert message.plain == "Use <think> tags like <think>this</think>." and not quotes(
        message.entities
    )


async def test_an_unclosed_think_is_no_answer(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings=HISTORY)
    openai_server.script_chat(ChatReply(chunks=["<think>Let me see. First", " the sky, then"]))
    await telegram.send_message("why?")
    shown = await telegram.next_message(42)
    assert quotes(shown.entities) and "the sky, then" in (shown.plain or "")
    error = await telegram.next_message(42)
    assert error.text == (
        "The model thought but gave no answer (it may have run out of tokens). Please try again."
    )
    # Nothing of the reasoning became an answer in the history.
    assert await assistant_in_history(telegram, openai_server) == []


async def test_non_streamed_answers_leave_the_think_block_out(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings={**HISTORY, "chat": {"stream": False}})
    openai_server.script_chat(ChatReply(text=ANSWER, reasoning=THOUGHT, reasoning_style="think"))
    assert (await telegram.reply_to("why?")).plain == SHOWN_ANSWER
    openai_server.script_chat(ChatReply(text=ANSWER, reasoning=THOUGHT))
    assert (await telegram.reply_to("why?")).plain == SHOWN_ANSWER
    assert await assistant_in_history(telegram, openai_server) == [ANSWER, ANSWER]


@pytest.mark.telegram_limits(None)
async def test_long_reasoning_never_crowds_out_the_answer(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"])
    thought = " ".join(f"step{i} checks one more thing." for i in range(3000))  # ~80k characters
    answer = "\n\n".join(f"Paragraph {i}: " + "words " * 120 for i in range(12))  # ~9k characters
    openai_server.script_chat(ChatReply(text=answer, reasoning=thought))
    await telegram.send_message("think hard")
    await telegram.wait_for(
        lambda: any("Paragraph 11" in (m.plain or "") for m in telegram.bot_messages(42)),
        timeout=10,
    )
    messages = telegram.bot_messages(42)
    first = messages[0]
    [quote] = quotes(first.entities)
    shown = quoted(first.plain or "", quote)
    assert utf16_len(shown) <= REASONING_LIMIT + utf16_len(REASONING_MARK)
    # Its latest part, from a word boundary on.
    rest = shown.removeprefix(REASONING_MARK + "…")
    assert rest != shown and thought.endswith(rest) and thought[-len(rest) - 1] == " "
    # The whole answer arrived, after the reasoning, in messages Telegram accepts.
    text = "\n\n".join(m.plain or "" for m in messages)
    assert all(f"Paragraph {i}:" in text for i in range(12))
    assert "Paragraph 0" in (first.plain or "")
    assert all(not quotes(m.entities) for m in messages[1:])


async def test_voice_never_reads_the_reasoning(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    voice = {"tts_model": "tts-test", "tts_voice": "nova"}
    await start_bot(["history", "voice", "chat"], settings={"voice": voice})
    await telegram.reply_to("/voice on")
    openai_server.script_chat(ChatReply(text="It is blue.", reasoning=THOUGHT))
    await telegram.send_message("why?")
    await telegram.wait_for(lambda: any(m.kind == "voice" for m in telegram.bot_messages(42)))
    speech = [
        str((r.json or {}).get("input"))
        for r in openai_server.requests
        if r.path.endswith("/audio/speech")
    ]
    assert speech == ["It is blue."]


async def test_reasoning_tokens_are_metered(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    usage = {"prices": {"chat.output_tokens": 1.0}}
    await start_bot(["usage", "chat"], settings={"usage": usage})
    openai_server.script_chat(
        ChatReply(
            text="Blue.",
            reasoning=THOUGHT,
            usage={
                "prompt_tokens": 10,
                "completion_tokens": 50,
                "total_tokens": 60,
                "completion_tokens_details": {"reasoning_tokens": 45},
            },
        )
    )
    await telegram.reply_to("why?")
    report = (await telegram.reply_to("/usage")).text or ""
    assert "chat.reasoning_tokens: 45" in report
    assert "chat.output_tokens: 50" in report
    assert "cost: $50.00" in report  # reasoning is billed as output, once


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
async def test_in_a_group_by_edits_and_through_either_client(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, http_client: str
) -> None:
    await start_bot(
        ["chat"], bot={"http_client": http_client}, settings={"chat": {"groups": "all"}}
    )
    openai_server.script_chat(
        ChatReply(text=ANSWER, reasoning=THOUGHT, first_chunk_delay=0.1, total_duration=1.5)
    )
    await telegram.send_message("why?", chat_id=-5, chat_type="group")
    message = await telegram.next_message(-5, timeout=5)
    await telegram.wait_for(lambda: SHOWN_ANSWER in (message.plain or ""), timeout=5)
    assert message.plain == f"{REASONING_MARK}{THOUGHT}\n\n{SHOWN_ANSWER}"
    assert quotes(message.entities)


async def test_reasoning_around_tool_calls_stays_out_of_the_history(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat", "sample_plugins.toolbox"], settings=HISTORY)
    openai_server.script_chat(
        ChatReply(reasoning="I should add.", tool_calls=[ToolCall("add", {"a": 2, "b": 40}, "c1")]),
        ChatReply(text="It is 42.", reasoning="The tool said 42."),
    )
    message = await telegram.reply_to("what is 2 + 40?")
    await telegram.wait_for(lambda: "It is 42." in (message.plain or ""))
    [quote] = quotes(message.entities)
    assert (
        quoted(message.plain or "", quote) == f"{REASONING_MARK}I should add.\n\nThe tool said 42."
    )
    await telegram.reply_to("thanks")
    assistant = [m for m in openai_server.last_chat_messages() if m["role"] == "assistant"]
    assert [m.get("content") for m in assistant] == [None, "It is 42."]


async def test_a_stream_broken_after_its_reasoning_says_so(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"])
    openai_server.script_chat(
        ChatReply(text="never seen", reasoning="one two three four five six", drop_after_chunks=2)
    )
    await telegram.send_message("why?")
    shown = await telegram.next_message(42)
    assert quotes(shown.entities)
    assert (await telegram.next_message(42)).text == "The answer was cut off. Please try again."
