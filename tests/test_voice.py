"""voice end to end: real audio made with ffmpeg, transcribed, then answered by chat."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from botcore.testing.fake_openai import ErrorReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram

PLUGINS = ["voice", "chat"]
NO_STREAM = {"chat": {"stream": False}}


def audio(seconds: float, *args: str) -> bytes:
    """Real audio from ffmpeg: a sine tone, encoded with `args` (codec and container)."""
    return subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:duration={seconds}",
            *args,
            "pipe:1",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout


OGG_OPUS = ("-c:a", "libopus", "-f", "ogg")


def transcription_requests(openai_server: FakeOpenAI) -> list:
    return [r for r in openai_server.requests if r.path.endswith("/audio/transcriptions")]


@pytest.fixture(autouse=True)
def private_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot's temporary files go to a folder of this test's own, so that leftovers() sees this
    test's leaks only, not another test run's on the same machine."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tmp")))


def leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("botcore-voice-*")}


async def test_voice_is_transcribed_and_answered(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(
        PLUGINS,
        store={"backend": "memory"},  # so that any file left in the working directory is a leak
        settings={**NO_STREAM, "voice": {"model": "whisper-test", "language": "ru"}},
    )
    before = leftovers()
    data = audio(1.0, *OGG_OPUS)
    await telegram.send_voice(data, duration=1)
    transcript = await telegram.next_message(42)
    answer = await telegram.next_message(42)
    assert transcript.text == f"🎤 transcript of {len(data)} bytes"
    assert answer.text == f"echo: transcript of {len(data)} bytes"
    request = transcription_requests(openai_server)[-1]
    assert request.form["model"] == "whisper-test" and request.form["language"] == "ru"
    assert request.files["file"] == data  # OGG/Opus is accepted as is: no conversion
    assert request.filenames["file"].endswith(".ogg")
    assert openai_server.last_chat_messages()[-1] == {
        "role": "user",
        "content": f"transcript of {len(data)} bytes",
    }
    assert leftovers() == before and os.listdir(".") == []  # no temporary file outlives the turn


async def test_transcript_can_stay_hidden(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(PLUGINS, settings={**NO_STREAM, "voice": {"show_transcript": False}})
    openai_server.script_transcription("what is two plus two")
    await telegram.send_voice(audio(0.5, *OGG_OPUS))
    assert (await telegram.next_message(42)).text == "echo: what is two plus two"


async def test_audio_in_an_unaccepted_format_is_converted(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(PLUGINS, settings=NO_STREAM)
    data = audio(1.0, "-c:a", "pcm_s16be", "-f", "au")
    await telegram.send_voice(data, kind="audio", mime_type="audio/basic", file_name="memo.au")
    await telegram.next_message(42)
    request = transcription_requests(openai_server)[-1]
    assert request.filenames["file"].endswith(".mp3")
    assert request.files["file"][:3] == b"ID3" or request.files["file"][:2] == b"\xff\xfb"


async def test_video_notes_are_transcribed(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(PLUGINS, settings=NO_STREAM)
    data = audio(1.0, "-c:a", "aac", "-f", "mp4", "-movflags", "frag_keyframe+empty_moov")
    await telegram.send_voice(data, kind="video_note")
    assert (await telegram.next_message(42)).text == f"🎤 transcript of {len(data)} bytes"
    assert transcription_requests(openai_server)[-1].filenames["file"].endswith(".mp4")


async def test_long_audio_is_split_into_chunks(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(
        PLUGINS, settings={**NO_STREAM, "voice": {"max_upload_mb": 0.05, "chunk_seconds": 2}}
    )
    openai_server.script_transcription("first part", "second part", "third part")
    await telegram.send_voice(
        audio(5.0, "-c:a", "pcm_s16le", "-f", "wav"), kind="audio", mime_type="audio/wav"
    )
    assert (await telegram.next_message(42)).text == "🎤 first part second part third part"
    assert len(transcription_requests(openai_server)) == 3


@pytest.mark.parametrize(
    ("data", "kind", "expected"),
    [
        (
            b"this is not audio at all" * 100,
            "voice",
            "I could not read this file as audio. Please send a voice message or an audio file.",
        ),
        (
            b"OggS\x00\x02" + b"\x00" * 200,
            "voice",
            "I could not read this file as audio. Please send a voice message or an audio file.",
        ),
        (b"", "voice", "The recording is empty."),
        (
            b"\x89PNG\r\n\x1a\n" + b"\x00" * 500,
            "document",
            "I could not read this file as audio. Please send a voice message or an audio file.",
        ),
    ],
    ids=["garbage", "corrupt-ogg", "empty", "png-as-audio-document"],
)
async def test_bad_audio_gets_a_clear_message(
    start_bot,
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    data: bytes,
    kind: str,
    expected: str,
) -> None:
    await start_bot(PLUGINS, settings=NO_STREAM)
    before = leftovers()
    await telegram.send_voice(data, kind=kind, mime_type="audio/ogg")
    assert (await telegram.next_message(42)).text == expected
    assert transcription_requests(openai_server) == []
    assert leftovers() == before


async def test_too_long_and_too_big(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(PLUGINS, settings={**NO_STREAM, "voice": {"max_duration": 120}})
    await telegram.send_voice(audio(0.5, *OGG_OPUS), duration=600)
    assert (await telegram.next_message(42)).text == "The recording is too long: at most 2 minutes."
    await telegram.send_voice(b"\x00" * (21 * 1024 * 1024), duration=10)
    assert (await telegram.next_message(42)).text == "The file is too big: the limit is 20 MB."
    assert not telegram.calls("getFile")
    assert transcription_requests(openai_server) == []


async def test_transcription_errors(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(PLUGINS, settings=NO_STREAM)
    openai_server.script_transcription(ErrorReply.server_error(), "")
    await telegram.send_voice(audio(0.5, *OGG_OPUS), language_code="ru")
    assert (
        await telegram.next_message(42)
    ).text == "Модель сейчас недоступна. Попробуйте через минуту."
    await telegram.send_voice(audio(0.5, *OGG_OPUS))
    assert (await telegram.next_message(42)).text == "I could not hear any speech in the recording."


async def test_voice_without_chat_still_shows_the_transcript(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["voice"])
    openai_server.script_transcription("hello there")
    await telegram.send_voice(audio(0.5, *OGG_OPUS))
    assert (await telegram.next_message(42)).text == "🎤 hello there"


async def test_groups_transcribe_only_replies_to_the_bot(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(PLUGINS, settings=NO_STREAM)
    group = {"chat_id": -100, "chat_type": "supergroup"}
    await telegram.send_voice(audio(0.5, *OGG_OPUS), **group)
    bot_message = await telegram.reply_to("@botcore_test_bot hi", **group)
    await telegram.send_voice(
        audio(0.5, *OGG_OPUS), reply_to_message_id=bot_message.message_id, **group
    )
    transcript = await telegram.next_message(-100)
    assert (transcript.text or "").startswith("🎤 transcript of ")
    assert len(transcription_requests(openai_server)) == 1
