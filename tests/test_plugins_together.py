"""Each first-party plugin alone, and all four together: removing one leaves the rest working."""

from __future__ import annotations

import pytest

from botcore.testing.fake_openai import FakeOpenAI, sample_audio
from botcore.testing.fake_telegram import FakeTelegram

SETTINGS = {"chat": {"stream": False}}
COMMANDS = {
    "history": ["/clear", "/new", "/chats"],
    "image": ["/image"],
    "chat": ["/retry", "/mode", "/model", "/reasoning"],
    "voice": ["/voice"],
}


def ogg() -> bytes:
    """Half a second of real OGG/Opus, made by the kit (ffmpeg) once per process."""
    data, content_type = sample_audio("opus")
    assert content_type == "audio/ogg"
    return data


@pytest.mark.parametrize("plugin", ["history", "chat", "image", "voice"])
async def test_each_plugin_alone(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, plugin: str
) -> None:
    await start_bot([plugin], settings={k: v for k, v in SETTINGS.items() if k == plugin})
    help_text = (await telegram.reply_to("/help")).text or ""
    for name, commands in COMMANDS.items():
        for command in commands:
            assert (command in help_text) == (name == plugin), (command, help_text)
    menu = [c["command"] for c in telegram.commands[("default", None)]]
    assert menu == ["start", "help", "cancel", *(c.lstrip("/") for c in COMMANDS[plugin])]
    if plugin == "history":
        assert (
            await telegram.reply_to("/clear")
        ).text == "Done: I have forgotten our conversation."
        assert (
            await telegram.reply_to("hello")
        ).text == "I only answer commands here. /help lists them."
    elif plugin == "chat":
        assert (await telegram.reply_to("hello")).text == "echo: hello"
    elif plugin == "image":
        assert (await telegram.reply_to("/image a cat")).kind == "photo"
        assert (
            await telegram.reply_to("hello")
        ).text == "I only answer commands here. /help lists them."
    else:
        openai_server.script_transcription("spoken words")
        await telegram.send_voice(ogg())
        assert (await telegram.next_message(42)).text == "🎤 spoken words"
        assert (await telegram.reply_to("/image a cat")).text == (
            "I don't know the command /image. /help lists what I can do."
        )


async def test_all_four_together(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat", "image", "voice"], settings=SETTINGS)
    help_text = (await telegram.reply_to("/help")).text or ""
    assert "/clear" in help_text and "/image" in help_text
    assert (await telegram.reply_to("hello")).text == "echo: hello"
    assert (await telegram.reply_to("/image a cat")).kind == "photo"
    openai_server.script_transcription("and what about dogs")
    await telegram.send_voice(ogg())
    assert (await telegram.next_message(42)).text == "🎤 and what about dogs"
    assert (await telegram.next_message(42)).text == "echo: and what about dogs"
    # The voice turn joined the same conversation as the typed one.
    contents = [m["content"] for m in openai_server.last_chat_messages()[1:]]
    assert contents == ["hello", "echo: hello", "and what about dogs"]
