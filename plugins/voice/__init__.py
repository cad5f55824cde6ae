"""voice: voice messages, audio files and video notes become text, then flow on as if typed.

A `pre_message` hook: download, check (ffprobe), convert with pydub + ffmpeg only when the format
needs it or the file is over the upload limit (then it is split into chunks), transcribe, and
rewrite the turn into a text turn. Nothing here knows that a chat plugin exists.
The other way round, `/voice on` turns answers into voice messages (speak.py, a post_message hook).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field
from telegram.warnings import PTBDeprecationWarning

from botcore import (
    App,
    Command,
    Reply,
    StartupError,
    StrictModel,
    Text,
    TextStream,
    Turn,
    UserError,
    explain_api_error,
    hookimpl,
)

from . import speak

PLUGIN = "voice"
log = logging.getLogger(__name__)

ACCEPTED = {"ogg": "ogg", "mp3": "mp3", "wav": "wav", "flac": "flac", "mp4": "mp4", "webm": "webm"}
"""ffprobe format name -> the extension the transcription endpoint accepts as is."""


class Settings(StrictModel):
    """[plugins.voice]"""

    model: str = "whisper-1"
    language: str | None = None
    """A language hint for transcription ("ru", "en"); unset lets the model detect it."""
    show_transcript: bool = True
    """Send the transcript to the user before the answer."""
    max_duration: int = Field(1800, ge=1)
    """Longer recordings (seconds) are refused with a clear message."""
    max_upload_mb: float = Field(24, gt=0, le=25)
    """The transcription endpoint takes up to 25 MB per file; larger audio is split into chunks."""
    chunk_seconds: int = Field(600, ge=1)
    groups: Literal["addressed", "all", "off"] = "addressed"
    """In groups transcribe replies to the bot (addressed), every recording (all), or none (off)."""
    tts_model: str = "gpt-4o-mini-tts"
    """Voice replies (/voice on): the text-to-speech model."""
    tts_voice: str = "alloy"
    tts_instructions: str | None = None
    """How to speak ("calm and friendly"), for models that take instructions (gpt-4o-mini-tts)."""
    tts_with_text: bool = True
    """Send the text too (it always goes along when the answer holds code)."""
    tts_chunk_chars: int = Field(speak.TTS_LIMIT, ge=100, le=speak.TTS_LIMIT)
    """Longer answers become several voice messages, cut at paragraphs and sentences."""
    tts_plugins: list[str] = Field(default_factory=lambda: ["chat"])
    """Whose answers are spoken: the plugins that reply with model text."""


@dataclass(frozen=True)
class Audio:
    """The audio part of a message."""

    file_id: str
    size: int | None
    duration: int | None


@hookimpl
def settings_model() -> type[Settings]:
    return Settings


@hookimpl
def register_texts() -> dict[str, dict[str, str]]:
    return {
        "en": {
            "voice.too_long": "The recording is too long: at most {minutes} minutes.",
            "voice.empty": "The recording is empty.",
            "voice.unreadable": "I could not read this file as audio. Please send a voice message "
            "or an audio file.",
            "voice.no_speech": "I could not hear any speech in the recording.",
            "voice.transcript": "🎤 {text}",
            **speak.TEXTS["en"],
        },
        "ru": {
            "voice.too_long": "Запись слишком длинная: не больше {minutes} мин.",
            "voice.empty": "Запись пустая.",
            "voice.unreadable": "Не удалось прочитать файл как аудио. Пришлите голосовое сообщение "
            "или аудиофайл.",
            "voice.no_speech": "В записи не удалось расслышать речь.",
            "voice.transcript": "🎤 {text}",
            **speak.TEXTS["ru"],
        },
    }


@hookimpl
def register_commands(app: App) -> Sequence[Command]:
    return [Command("voice", speak.voice_command, help=app.translations("voice.replies_help"))]


@hookimpl
async def post_message(turn: Turn, reply: Reply) -> Reply | None:
    """Speak the answer to a user who turned voice replies on."""
    if not isinstance(reply, TextStream) and not (isinstance(reply, Text) and reply.markdown):
        return None  # notes, errors and command replies stay text
    settings = turn.app.settings(Settings)
    if turn.replied_by not in settings.tts_plugins or not await speak.is_on(turn):
        return None
    return await speak.speak(turn, settings, reply)


@hookimpl
def startup(app: App) -> None:
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        raise StartupError(
            f"plugin 'voice': {' and '.join(missing)} not found; install ffmpeg (apt-get install ffmpeg)"
        )
    app.require_openai()  # a missing [openai] key fails start-up, not the first message


def audio_of(turn: Turn) -> Audio | None:
    """The audio a message carries: voice, audio file, video note, or a document of audio type."""
    message = turn.message
    if turn.kind == "voice" and message.voice:
        item = message.voice
        return Audio(item.file_id, item.file_size, _seconds(item))
    if turn.kind == "audio" and message.audio:
        audio = message.audio
        return Audio(audio.file_id, audio.file_size, _seconds(audio))
    if turn.kind == "video_note" and message.video_note:
        note = message.video_note
        return Audio(note.file_id, note.file_size, _seconds(note))
    document = message.document
    if turn.kind == "document" and document and (document.mime_type or "").startswith("audio/"):
        return Audio(document.file_id, document.file_size, None)
    return None


def _seconds(media: object) -> int | None:
    """A media's duration in seconds: PTB 22 gives ints (with a deprecation warning) or timedeltas."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        duration = getattr(media, "duration", None)
    if isinstance(duration, dt.timedelta):
        return int(duration.total_seconds())
    return duration if isinstance(duration, int) else None


@hookimpl
async def pre_message(turn: Turn) -> None:
    audio = audio_of(turn)
    if audio is None:
        return
    settings = turn.app.settings(Settings)
    if not turn.is_private and (
        settings.groups == "off" or (settings.groups == "addressed" and not turn.addressed)
    ):
        return
    if audio.duration is not None and audio.duration > settings.max_duration:
        raise UserError(turn.t("voice.too_long", minutes=settings.max_duration // 60 or 1))
    async with turn.chat_action("typing"):
        data = await turn.download(audio.file_id, size=audio.size)
        if not data:
            raise UserError(turn.t("voice.empty"))
        text = await transcribe(turn, settings, data)
    turn.text = text
    turn.kind = "text"
    if settings.show_transcript:
        await turn.send(turn.t("voice.transcript", text=text))


async def transcribe(turn: Turn, settings: Settings, data: bytes) -> str:
    """Check, convert if needed, split if needed, and transcribe; temporary files never outlive it."""
    import openai

    with tempfile.TemporaryDirectory(prefix="botcore-voice-") as folder:
        source = Path(folder) / "input"
        await asyncio.to_thread(source.write_bytes, data)
        probe = await _probe(source)
        if probe is None:
            raise UserError(turn.t("voice.unreadable"))
        format_name, duration = probe
        if duration is not None and duration > settings.max_duration:
            raise UserError(turn.t("voice.too_long", minutes=settings.max_duration // 60 or 1))
        await turn.reserve({"voice.seconds": duration or 0})
        extension = ACCEPTED.get(format_name)
        limit = int(settings.max_upload_mb * 1024 * 1024)
        if extension and len(data) <= limit:
            files = [source.rename(source.with_suffix("." + extension))]
        else:
            try:
                files = await asyncio.to_thread(
                    _convert, source, Path(folder), settings.chunk_seconds, limit
                )
            except Exception as exc:  # pydub raises a bare CouldntDecodeError/IndexError
                log.info("could not decode audio (update %s): %r", turn.update_id, exc)
                raise UserError(turn.t("voice.unreadable")) from None
        texts = []
        try:
            for path in files:
                data_part = await asyncio.to_thread(path.read_bytes)
                with turn.app.metrics.timed("llm_seconds", plugin=PLUGIN, model=settings.model):
                    result = await turn.app.openai.audio.transcriptions.create(
                        file=(path.name, data_part),
                        model=settings.model,
                        language=settings.language or openai.omit,
                    )
                texts.append(result.text.strip())
            if duration is not None:
                turn.meter("voice.seconds", duration)
        except openai.BadRequestError as exc:
            if "content_policy" in str(exc.code or ""):
                raise explain_api_error(exc, turn, plugin=PLUGIN) from None
            log.info(
                "the transcription endpoint refused the audio (update %s): %s", turn.update_id, exc
            )
            raise UserError(turn.t("voice.unreadable")) from None
        except openai.OpenAIError as exc:
            raise explain_api_error(exc, turn, plugin=PLUGIN) from None
    text = " ".join(t for t in texts if t)
    if not text:
        raise UserError(turn.t("voice.no_speech"))
    return text


async def _probe(path: Path) -> tuple[str, float | None] | None:
    """(format name, duration) if ffprobe finds an audio stream in the file, else None."""
    process = await asyncio.create_subprocess_exec(
        "ffprobe",
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        return None
    try:
        info = json.loads(output)
    except ValueError:
        return None
    streams = info.get("streams") or []
    if not any(s.get("codec_type") == "audio" for s in streams):
        return None
    fmt = info.get("format") or {}
    names = str(fmt.get("format_name", "")).split(",")
    name = next((n for n in names if n in ACCEPTED), names[0] if names else "")
    if "mp4" in names or "mov" in names:
        name = "mp4"
    if "webm" in names:
        name = "webm"
    try:
        duration: float | None = float(fmt["duration"])
    except (KeyError, TypeError, ValueError):
        duration = None
    return name, duration


def _convert(source: Path, folder: Path, chunk_seconds: int, limit: int) -> list[Path]:
    """Decode with pydub and export MP3 chunks that each fit under `limit` bytes."""
    from pydub import AudioSegment

    audio = AudioSegment.from_file(source).set_channels(1)
    if len(audio) == 0:
        return []
    bitrate_kbps = 64
    bytes_per_second = bitrate_kbps * 1000 // 8
    seconds = max(1, min(chunk_seconds, int(limit * 0.9 // bytes_per_second)))
    step = seconds * 1000
    paths = []
    for index, start in enumerate(range(0, len(audio), step)):
        path = folder / f"part{index:03d}.mp3"
        exported = audio[start : start + step].export(
            path, format="mp3", bitrate=f"{bitrate_kbps}k"
        )
        exported.close()  # pydub hands back the file it wrote, still open
        paths.append(path)
    return paths
