"""Voice replies end to end: /voice on, answers spoken through the fake /audio/speech endpoint."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from botcore_voice.speak import speech_text, split_speech
from hypothesis import given
from hypothesis import strategies as st
from sample_plugins import usage

from botcore.testing.fake_openai import ChatReply, ErrorReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness

PLUGINS = ["history", "voice", "chat"]
CHAT = {"stream": False}
VOICE = {"tts_model": "tts-test", "tts_voice": "nova"}


def speech_inputs(openai_server: FakeOpenAI) -> list[str]:
    return [
        str((r.json or {}).get("input"))
        for r in openai_server.requests
        if r.path.endswith("/audio/speech")
    ]


def voices(telegram: FakeTelegram) -> list[bytes]:
    return [m.data or b"" for m in telegram.bot_messages(42) if m.kind == "voice"]


async def settle(telegram: FakeTelegram, count: int) -> list[Any]:
    """The next `count` bot messages in chat 42."""
    return [await telegram.next_message(42) for _ in range(count)]


async def test_voice_on_speaks_the_answer_with_the_text(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot([*PLUGINS, "sample_plugins.usage"], settings={"chat": CHAT, "voice": VOICE})
    assert (await telegram.reply_to("/voice")).text == (
        "Voice replies are off. /voice on or /voice off changes it."
    )
    assert (await telegram.reply_to("/voice on")).text == (
        "Voice replies are on: I will answer with voice messages. /voice off turns them off."
    )
    usage.seen.clear()
    openai_server.script_chat("# Hello\nThis is **bold** and a [link](https://example.com).")
    await telegram.send_message("hi")
    text, voice = await settle(telegram, 2)
    assert (
        text.kind == "text" and text.text == "📌 Hello\nThis is bold and a link."
    )  # as the core renders it
    assert voice.kind == "voice" and voice.data[:4] == b"OggS"
    [speech] = [r.json for r in openai_server.requests if r.path.endswith("/audio/speech")]
    assert speech == {
        "model": "tts-test",
        "voice": "nova",
        "input": "Hello.\nThis is bold and a link.",
        "response_format": "opus",
    }
    assert usage.seen[-1]["tts.characters"] == len("Hello.\nThis is bold and a link.")

    # Commands are not spoken, and /voice off goes back to text.
    assert (await telegram.reply_to("/voice")).text.startswith("Voice replies are on.")
    assert (await telegram.reply_to("/voice off")).text == (
        "Voice replies are off: I will answer with text."
    )
    assert (await telegram.reply_to("and now?")).text == "echo: and now?"
    assert len(speech_inputs(openai_server)) == 1


async def test_voice_only_streamed_and_split_in_order(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {
        "chat": {"stream": True},
        "voice": {**VOICE, "tts_with_text": False, "tts_chunk_chars": 120},
    }
    await start_bot(PLUGINS, settings=settings)
    await telegram.reply_to("/voice on")
    paragraphs = [f"Paragraph {n}. " + "It has words in it. " * 4 for n in range(1, 4)]
    answer = "\n\n".join(p.strip() for p in paragraphs)
    openai_server.script_chat(ChatReply(text=answer, chunk_delay=0.01))
    await telegram.send_message("tell me a story")
    sent = await settle(telegram, 3)
    assert [m.kind for m in sent] == ["voice", "voice", "voice"]
    assert all(m.data[:4] == b"OggS" for m in sent)
    inputs = speech_inputs(openai_server)
    assert [i.split(".")[0] for i in inputs] == ["Paragraph 1", "Paragraph 2", "Paragraph 3"]
    assert all(len(i) <= 120 for i in inputs)
    assert " ".join(inputs).split() == answer.split()
    assert not telegram.calls("sendMessage")[1:]  # only the /voice on confirmation was text
    assert not telegram.calls("editMessageText")  # the stream was drained, never shown


async def test_a_failed_synthesis_still_delivers_the_text(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"chat": CHAT, "voice": {**VOICE, "tts_with_text": False, "tts_chunk_chars": 100}}
    await start_bot(PLUGINS, settings=settings)
    await telegram.reply_to("/voice on")
    openai_server.fail("audio/speech", ErrorReply.server_error())
    await telegram.send_message("hello")
    text, note = await settle(telegram, 2)
    assert text.text == "echo: hello"
    assert note.text == "🔇 I could not make a voice message this time; the answer is in text."
    assert voices(telegram) == []

    # In Russian, and when a later piece fails: the spoken ones stay, the text still arrives.
    await telegram.reply_to("/voice on", language_code="ru")
    openai_server.script_speech(b"OggS-first", ErrorReply.rate_limit())
    answer = "First part." + " Words." * 14 + "\n\nSecond part."
    openai_server.script_chat(answer)
    await telegram.send_message("again", language_code="ru")
    first, text, note = await settle(telegram, 3)
    assert first.kind == "voice" and first.data == b"OggS-first"
    assert text.text == answer
    assert note.text == "🔇 Не получилось озвучить ответ; он есть текстом."


async def test_voice_replies_survive_a_restart(
    bot_harness: BotHarness, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    store = {"backend": "sqlite", "path": "state.sqlite3"}
    settings = {"chat": CHAT, "voice": VOICE}
    first = await bot_harness.start(PLUGINS, store=store, settings=settings)
    await telegram.reply_to("/voice on")
    await first.stop()
    await bot_harness.start(PLUGINS, store=store, settings=settings)
    await telegram.send_message("still there?")
    text, voice = await settle(telegram, 2)
    assert (text.text, voice.kind) == ("echo: still there?", "voice")


async def test_code_is_not_read_aloud_and_its_text_always_goes_along(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"chat": CHAT, "voice": {**VOICE, "tts_with_text": False}}
    await start_bot(PLUGINS, settings=settings)
    await telegram.reply_to("/voice on")
    openai_server.script_chat("Run this:\n\n```python\nprint('hi')\n```\n\nThat is all.")
    await telegram.send_message("code please")
    text, voice = await settle(telegram, 2)
    assert text.kind == "text" and "print('hi')" in (text.text or "")
    assert voice.kind == "voice"
    assert speech_inputs(openai_server) == [
        "Run this:\n\nThere is code in the text message.\n\nThat is all."
    ]


async def test_a_broken_stream_is_shown_not_spoken(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"chat": {"stream": True}, "voice": VOICE}
    await start_bot(PLUGINS, settings=settings)
    await telegram.reply_to("/voice on")
    openai_server.script_chat(ChatReply(text="one two three four five six", drop_after_chunks=1))
    await telegram.send_message("go")
    partial, error = await settle(telegram, 2)
    assert partial.text == "one two three four"
    assert error.text == "The answer was cut off. Please try again."
    assert speech_inputs(openai_server) == []

    # An answer with nothing to read aloud arrives once, as text.
    openai_server.script_chat("* * *")
    await telegram.send_message("draw a line")
    [line] = await settle(telegram, 1)
    assert line.kind == "text" and speech_inputs(openai_server) == []
    await telegram.reply_to("/voice")  # a later message: nothing else was sent before it
    kinds = [m.kind for m in telegram.bot_messages(42)]
    assert kinds == ["text"] * 5


async def test_bad_arguments_and_other_languages(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(PLUGINS, settings={"chat": CHAT})
    assert (await telegram.reply_to("/voice loud")).text == "Use /voice on or /voice off."
    reply = await telegram.reply_to("/voice", language_code="ru")
    assert reply.text == "Голосовые ответы выключены. Изменить: /voice on или /voice off."


def test_markdown_is_not_read_aloud() -> None:
    markdown = (
        "## Plan\n\n"
        "1. **First** step with `code`\n"
        "- a *bullet* and _more_\n"
        "> quoted ~~text~~\n\n"
        "| a | b |\n|---|:-:|\n| 1 | 2 |\n\n"
        "---\n"
        "![a cat](https://x/cat.png) see [docs](https://x/docs) and snake_case_name.\n"
        "```\nsecret()\n```"
    )
    assert speech_text(markdown, "(code)") == (
        "Plan.\n\n"
        "1. First step with code\n"
        "a bullet and more\n"
        "quoted text\n\n"
        "a, b\n\n1, 2\n\n"
        "a cat see docs and snake_case_name.\n"
        "(code)"
    )


def test_split_prefers_paragraphs_then_sentences() -> None:
    text = "One. Two three.\n\nFour five six seven. Eight."
    assert split_speech(text, 100) == [text]
    assert split_speech(text, 30) == ["One. Two three.", "Four five six seven. Eight."]
    assert split_speech(text, 22) == ["One. Two three.", "Four five six seven.", "Eight."]
    assert split_speech("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    assert split_speech(" \n\n ", 10) == []


@given(st.text(alphabet=st.sampled_from("ab .,!?\n"), max_size=400), st.integers(5, 60))
def test_split_keeps_every_word_within_the_limit(text: str, limit: int) -> None:
    pieces = split_speech(text, limit)
    assert all(0 < len(p) <= limit and p == p.strip() for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split())


async def test_a_stream_failing_while_voice_reads_it_is_its_plugins_failure(
    start_bot, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    """Voice drains another plugin's stream in post_message to speak it: a bug in that stream is
    logged and counted against the plugin that made it, and the turn is not "answered"."""
    echo = "sample_plugins.echo"
    bot = await start_bot(
        ["history", "voice", echo],
        settings={"voice": {**VOICE, "tts_plugins": [echo]}},
        bot={"breaker": {"failures": 2}},
    )
    await telegram.reply_to("/voice on")
    with caplog.at_level(logging.INFO):
        await telegram.send_message("/stream one crash")
        partial, error = await settle(telegram, 2)
        await telegram.reply_to("/voice")  # the turn before is over and logged
    assert (
        partial.text == "one"
        and error.text == "Could not process the request, please try again later."
    )
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in failures] == [
        f"plugin {echo} failed in its streamed answer (update 2)"
    ]
    assert bot.runtime.breaker.plugins[echo].last_error == "RuntimeError in its streamed answer"
    assert "voice" not in bot.runtime.breaker.plugins
    [line] = [
        r for r in caplog.records if r.name == "botcore.updates" and r.fields["command"] == "stream"
    ]
    assert line.fields["outcome"] == "error" and line.fields["errors"] == [echo]
