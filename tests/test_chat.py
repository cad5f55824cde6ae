"""chat end to end: the real bot against the fake Telegram and fake OpenAI servers."""

from __future__ import annotations

import time

import pytest

from botcore.testing.fake_openai import ChatReply, ErrorReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram

HISTORY: dict[str, dict[str, object]] = {"history": {}}
NO_STREAM = {"chat": {"stream": False}}


def user_texts(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "user"]


async def test_text_goes_to_the_model_and_back(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(
        ["chat"],
        settings={
            "chat": {
                "stream": False,
                "model": "gpt-test",
                "temperature": 0.3,
                "system_prompt": "Be brief.",
            }
        },
    )
    openai_server.script_chat("Hello, **human**!")
    openai_server.latency = 0.6  # long enough for "typing…" to show
    reply = await telegram.reply_to("hi there")
    assert reply.text == "Hello, human!"
    assert {"type": "bold", "offset": 7, "length": 5} in [
        {k: e[k] for k in ("type", "offset", "length")} for e in reply.entities
    ]
    request = openai_server.chat_requests[-1]
    assert request["model"] == "gpt-test" and request["temperature"] == 0.3
    assert request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi there"},
    ]
    assert (42, "typing") in telegram.chat_actions


async def test_history_carries_context_and_clear_wipes_it(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings={**HISTORY, **NO_STREAM})
    assert (await telegram.reply_to("my name is Ann")).text == "echo: my name is Ann"
    await telegram.reply_to("what is my name?")
    messages = openai_server.last_chat_messages()
    assert messages[1:] == [
        {"role": "user", "content": "my name is Ann"},
        {"role": "assistant", "content": "echo: my name is Ann"},
        {"role": "user", "content": "what is my name?"},
    ]
    # Another user never sees Ann's conversation.
    await telegram.reply_to("who am I?", user_id=7)
    assert user_texts(openai_server.last_chat_messages()) == ["who am I?"]
    # /clear confirms and forgets.
    assert (await telegram.reply_to("/clear")).text == "Done: I have forgotten our conversation."
    await telegram.reply_to("fresh start")
    assert user_texts(openai_server.last_chat_messages()) == ["fresh start"]


async def test_without_history_every_message_stands_alone(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings=NO_STREAM)
    await telegram.reply_to("one")
    await telegram.reply_to("two")
    assert user_texts(openai_server.last_chat_messages()) == ["two"]
    assert "/clear" not in ((await telegram.reply_to("/help")).text or "")


async def test_streaming_shows_text_early_as_drafts(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    # In a private chat the answer grows as a draft (tests/test_drafts.py has the edits of groups
    # and of servers without drafts), then arrives as one formatted message, never edited.
    await start_bot(["history", "chat"], settings=HISTORY)
    openai_server.script_chat(
        ChatReply(
            text="The quick brown fox jumps over the **lazy** dog again and again",
            first_chunk_delay=0.3,
            total_duration=1.5,
        )
    )
    sent = time.monotonic()
    await telegram.send_message("tell me a story")
    await telegram.wait_for(lambda: bool(telegram.drafts(42)))
    first_visible = time.monotonic() - sent
    final = "The quick brown fox jumps over the lazy dog again and again"
    message = await telegram.next_message(42, timeout=5)
    assert message.text == final
    assert first_visible < 1.0  # the first words, long before the 1.5 s answer is complete
    drafts = telegram.drafts(42)
    assert 2 <= len(drafts) <= 8
    assert drafts[0].plain != final and final.startswith(drafts[0].plain)
    assert not message.edits
    assert any(e["type"] == "bold" for e in message.entities)
    assert len(telegram.bot_messages(42)) == 1
    assert openai_server.chat_requests[-1]["stream"] is True
    # The complete answer went into history.
    await telegram.reply_to("and then?")
    assert openai_server.last_chat_messages()[2] == {
        "role": "assistant",
        "content": "The quick brown fox jumps over the **lazy** dog again and again",
    }


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            ErrorReply.rate_limit(),
            "Too many requests to the model right now. Please try again in a minute.",
        ),
        (
            ErrorReply.server_error(),
            "The model is unavailable right now. Please try again in a minute.",
        ),
        (
            ErrorReply.content_policy(),
            "The model refused this request under its content policy. Try rephrasing it.",
        ),
        (ErrorReply(hang=3), "The model took too long to answer. Please try again."),
    ],
    ids=["429", "500", "content-policy", "timeout"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_api_errors_get_a_clear_message_and_lose_nothing(
    start_bot,
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    error: ErrorReply,
    expected: str,
    stream: bool,
) -> None:
    await start_bot(
        ["history", "chat"], settings={**HISTORY, "chat": {"stream": stream}}, openai={"timeout": 1}
    )
    openai_server.fail("chat/completions", error)
    reply = await telegram.reply_to("first question", timeout=10)
    assert reply.text == expected
    # The bot keeps working, and the failed question is still in the history.
    assert (await telegram.reply_to("second question")).text == "echo: second question"
    assert user_texts(openai_server.last_chat_messages()) == ["first question", "second question"]


async def test_errors_are_in_the_users_language(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings=NO_STREAM)
    openai_server.fail("chat/completions", ErrorReply.server_error())
    reply = await telegram.reply_to("привет", language_code="ru")
    assert reply.text == "Модель сейчас недоступна. Попробуйте через минуту."


async def test_a_stream_dropped_midway_keeps_what_was_shown(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings=HISTORY)
    openai_server.script_chat(
        ChatReply(
            chunks=["Part one. ", "Part two. ", "Part three."], chunk_delay=0.1, drop_after_chunks=2
        )
    )
    await telegram.send_message("go")
    shown = await telegram.next_message(42)
    notice = await telegram.next_message(42)
    assert shown.text == "Part one. Part two."
    assert notice.text == "The answer was cut off. Please try again."
    assert (await telegram.reply_to("again")).text == "echo: again"
    assert user_texts(openai_server.last_chat_messages()) == ["go", "again"]


async def test_history_is_trimmed_to_the_budget(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(
        ["history", "chat"],
        settings={
            **HISTORY,
            "chat": {"stream": False, "context_messages": 2, "summarize": False},
        },
    )
    for text in ("one", "two", "three"):
        await telegram.reply_to(text)
    messages = openai_server.last_chat_messages()
    assert messages[0]["role"] == "system"
    assert [m["content"] for m in messages[1:]] == ["two", "echo: two", "three"]


async def test_token_budget_drops_oldest_turns(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(
        ["history", "chat"],
        settings={
            **HISTORY,
            "chat": {
                "stream": False,
                "context_tokens": 300,
                "system_prompt": "S",
                "summarize": False,  # summaries on: tests/test_summaries.py
            },
        },
    )
    await telegram.reply_to("a" * 240)  # ~80 tokens, and its echo ~82
    await telegram.reply_to("b" * 240)
    await telegram.reply_to("c" * 30)
    contents = [m["content"] for m in openai_server.last_chat_messages()]
    assert contents[0] == "S" and contents[-1] == "c" * 30
    assert "a" * 240 not in contents  # the oldest turn went first
    assert "b" * 240 in contents


async def test_a_message_too_large_for_the_window(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings={"chat": {"stream": False, "context_tokens": 1000}})
    reply = await telegram.reply_to("word " * 2000)
    assert (reply.text or "").startswith("Your message is too long for the model: about ")
    assert openai_server.chat_requests == []


async def test_groups_answer_only_when_addressed(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings=NO_STREAM)
    group = {"chat_id": -100, "chat_type": "supergroup"}
    await telegram.send_message("just chatting", **group)
    reply = await telegram.reply_to("@botcore_test_bot what time is it?", **group)
    assert reply.text == "echo: Test: what time is it?"
    answer_to = reply.message_id
    reply = await telegram.reply_to("and tomorrow?", reply_to_message_id=answer_to, **group)
    assert reply.text == "echo: Test: and tomorrow?"
    assert len(openai_server.chat_requests) == 2
    assert reply.reply_to_message_id is not None  # in groups the answer quotes the question


async def test_groups_all_answers_everything(start_bot, telegram: FakeTelegram) -> None:
    await start_bot(["chat"], settings={"chat": {"stream": False, "groups": "all"}})
    reply = await telegram.reply_to("just chatting", chat_id=-100, chat_type="group")
    assert reply.text == "echo: Test: just chatting"


async def test_long_answer_is_split(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings=NO_STREAM)
    openai_server.script_chat("\n".join(f"Paragraph {i}. " + "word " * 40 for i in range(60)))
    await telegram.send_message("write a lot")
    await telegram.wait_for(
        lambda: "Paragraph 59." in "".join(m.text or "" for m in telegram.bot_messages(42))
    )
    messages = telegram.bot_messages(42)
    assert len(messages) >= 3
    assert "".join(m.text or "" for m in messages).count("Paragraph") == 60
