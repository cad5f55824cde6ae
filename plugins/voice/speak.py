"""voice replies: `/voice on` makes the chat's answers come back as voice messages (text-to-speech).

A `post_message` hook: for a user who turned it on (a record in `app.store`, so it survives
restarts), a Text or a fully drained TextStream answer is stripped of Markdown, split at
paragraphs and sentences under the endpoint's 4096-character limit, and spoken piece by piece as
OGG/Opus voice messages. The text goes along when `tts_with_text` is set or when the answer holds
code (code is not read aloud); a failed synthesis still delivers the text, with a short note.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from botcore import (
    Reasoning,
    Reply,
    Text,
    TextStream,
    Turn,
    UserError,
    Voice,
    explain_api_error,
)

if TYPE_CHECKING:
    from . import Settings

log = logging.getLogger(__name__)

NAMESPACE = "voice.replies"
TTS_LIMIT = 4096
"""The speech endpoint takes at most this many characters per request."""

_FENCE = re.compile(r"^ {0,3}(```|~~~).*?(^ {0,3}\1[^\n]*$|\Z)", re.M | re.S)
_MARKDOWN: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images: their alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links: their text
    (re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t#]*$", re.M), r"\1."),  # headings end a sentence
    (re.compile(r"^ {0,3}(?:[-*_][ \t]*){3,}$", re.M), ""),  # horizontal rules
    (re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)+\|?[ \t]*$", re.M), ""),
    (re.compile(r"^[ \t]*>[ \t]?", re.M), ""),  # quotes
    (re.compile(r"^([ \t]*)[-*+•][ \t]+", re.M), r"\1"),  # bullets
    (re.compile(r"(\*\*|__|~~)(.+?)\1", re.S), r"\2"),  # bold, strikethrough
    (re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", re.S), r"\1"),  # *italic*
    (re.compile(r"(?<!\w)_(?!\s)(.+?)(?<!\s)_(?!\w)", re.S), r"\1"),  # _italic_
    (re.compile(r"`([^`\n]+)`"), r"\1"),  # inline code: its text
    (re.compile(r"^[ \t]*\|(.*?)\|[ \t]*$", re.M), r"\1"),  # table rows: outer pipes
    (re.compile(r"[ \t]*\|[ \t]*"), ", "),  # table cells
    (re.compile(r"<[^>\n]+>"), ""),  # stray HTML tags
    (re.compile(r"^[ \t]+|[ \t]+$", re.M), ""),
    (re.compile(r"\n{3,}"), "\n\n"),
]
"""Markdown to plain speech, in order (the table rule goes before its rows lose their pipes)."""
_LEVELS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\n\s*\n"), "\n\n"),  # paragraphs
    (re.compile(r"\n"), "\n"),  # lines
    (re.compile(r"(?<=[.!?…])\s+"), " "),  # sentences
    (re.compile(r"(?<=[,;:])\s+"), " "),  # clauses
    (re.compile(r"\s+"), " "),  # words
]


def has_code(markdown: str) -> bool:
    """Whether the answer holds a fenced code block (never read aloud)."""
    return _FENCE.search(markdown) is not None


def speech_text(markdown: str, code_note: str) -> str:
    """What to read aloud: the Markdown's plain text, with each code block replaced by a note."""
    text = _FENCE.sub(code_note, markdown)
    for pattern, replacement in _MARKDOWN:
        text = pattern.sub(replacement, text)
    return text.strip()


def split_speech(text: str, limit: int = TTS_LIMIT, level: int = 0) -> list[str]:
    """Pieces of at most `limit` characters, cut at the coarsest boundary that fits: paragraphs,
    then lines, sentences, clauses, words; a word longer than the limit is cut."""
    text = text.strip()
    if not text:
        return []
    if len(text) <= limit:
        return [text]
    if level == len(_LEVELS):
        return [text[i : i + limit] for i in range(0, len(text), limit)]
    pattern, joiner = _LEVELS[level]
    pieces: list[str] = []
    current = ""
    for part in pattern.split(text):
        for small in split_speech(part, limit, level + 1):
            if current and len(current) + len(joiner) + len(small) <= limit:
                current += joiner + small
            else:
                if current:
                    pieces.append(current)
                current = small
    if current:
        pieces.append(current)
    return pieces


async def is_on(turn: Turn) -> bool:
    """Whether the sender asked for voice replies."""
    if turn.user_id is None:
        return False
    return bool(await turn.app.store.get(NAMESPACE, str(turn.user_id)))


async def voice_command(turn: Turn) -> str:
    """/voice on|off turns voice replies on or off for this user; /voice alone shows the state."""
    choice = turn.args.strip().lower()
    if turn.user_id is None:
        raise UserError(turn.t("voice.replies_usage"))
    if choice in ("on", "off"):
        value = True if choice == "on" else None
        await turn.app.store.put(NAMESPACE, str(turn.user_id), value)
        return turn.t("voice.replies_on" if value else "voice.replies_off")
    if choice:
        raise UserError(turn.t("voice.replies_usage"))
    state = turn.t("voice.state_on" if await is_on(turn) else "voice.state_off")
    return turn.t("voice.replies_state", state=state)


async def speak(turn: Turn, settings: Settings, reply: Text | TextStream) -> Reply:
    """Turn an answer into voice messages; the last one is returned as the turn's reply."""
    async with turn.chat_action("record_voice"):
        if isinstance(reply, TextStream):
            markdown, error = await _drain(turn, reply)
            if error is not None:  # show what came and why it stopped; speak nothing
                if markdown.strip():
                    await turn.send(Text(markdown, markdown=True))
                return Text(error)
        else:
            markdown = reply.text
        pieces = split_speech(
            speech_text(markdown, turn.t("voice.code_note")), settings.tts_chunk_chars
        )
        if not pieces:  # nothing to read aloud (only formatting)
            return Text(markdown, markdown=True)
        with_text = settings.tts_with_text or has_code(markdown)
        if with_text:
            await turn.send(Text(markdown, markdown=True))
        try:
            voices = [await _synthesize(turn, settings, piece) for piece in pieces[:1]]
            for piece in pieces[1:]:
                await turn.send(voices[-1])  # each piece is sent as soon as the next is asked for
                voices.append(await _synthesize(turn, settings, piece))
        except UserError as exc:
            log.warning("text-to-speech failed (update %s): %s", turn.update_id, exc.message)
            if not with_text:
                await turn.send(Text(markdown, markdown=True))
            return Text(turn.t("voice.tts_failed"))
    return voices[-1]


async def _drain(turn: Turn, reply: TextStream) -> tuple[str, str | None]:
    """The whole streamed answer (without its reasoning), and the message to show if the stream
    failed part way."""
    parts: list[str] = []
    error: str | None = None
    try:
        async for chunk in reply.chunks:
            if not isinstance(chunk, Reasoning):  # the model's thinking is never read aloud
                parts.append(chunk)
    except UserError as exc:
        error = exc.message
    except Exception:  # the core logged it and counted it against the plugin that made the stream
        error = turn.t("error")
    finally:
        aclose = getattr(reply.chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    return "".join(parts), error


async def _synthesize(turn: Turn, settings: Settings, text: str) -> Voice:
    """One OGG/Opus voice message from the speech endpoint; failures are UserErrors."""
    import openai

    try:
        response = await turn.app.openai.audio.speech.create(
            model=settings.tts_model,
            voice=settings.tts_voice,
            input=text,
            response_format="opus",
            instructions=settings.tts_instructions or openai.omit,
        )
        audio = await response.aread()
    except openai.OpenAIError as exc:
        raise explain_api_error(exc, turn, plugin="voice") from None
    if not audio:
        raise UserError(turn.t("voice.tts_failed"))
    turn.meter("tts.characters", len(text))
    return Voice(audio)


TEXTS = {
    "en": {
        "voice.replies_help": "Answer with voice messages: /voice on, /voice off",
        "voice.replies_on": "Voice replies are on: I will answer with voice messages. "
        "/voice off turns them off.",
        "voice.replies_off": "Voice replies are off: I will answer with text.",
        "voice.replies_state": "Voice replies are {state}. /voice on or /voice off changes it.",
        "voice.state_on": "on",
        "voice.state_off": "off",
        "voice.replies_usage": "Use /voice on or /voice off.",
        "voice.code_note": "There is code in the text message.",
        "voice.tts_failed": "🔇 I could not make a voice message this time; the answer is in text.",
    },
    "ru": {
        "voice.replies_help": "Отвечать голосовыми сообщениями: /voice on, /voice off",
        "voice.replies_on": "Голосовые ответы включены: буду отвечать голосом. "
        "/voice off выключает их.",
        "voice.replies_off": "Голосовые ответы выключены: буду отвечать текстом.",
        "voice.replies_state": "Голосовые ответы {state}. Изменить: /voice on или /voice off.",
        "voice.state_on": "включены",
        "voice.state_off": "выключены",
        "voice.replies_usage": "Используйте /voice on или /voice off.",
        "voice.code_note": "В текстовом сообщении есть код.",
        "voice.tts_failed": "🔇 Не получилось озвучить ответ; он есть текстом.",
    },
}
"""Merged into the voice plugin's register_texts."""
