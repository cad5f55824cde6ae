"""A fake Telegram Bot API server over real HTTP, for end-to-end tests and benchmarks.

Point the real python-telegram-bot at it with
``ApplicationBuilder().base_url(fake.base_url).base_file_url(fake.base_file_url)``; push user
updates with :meth:`FakeTelegram.send_message` & co. and inspect what the bot did through
:attr:`FakeTelegram.requests`, :attr:`FakeTelegram.messages` and :meth:`FakeTelegram.next_message`.

Fidelity notes (best effort, documented deviations from the real API):

* Error descriptions copy Telegram's wording where it is well known ("message is not modified",
  "message to edit not found", "message is too long", "message caption is too long", ...).
* ``parse_mode`` "HTML" and "MarkdownV2" are parsed by a small checker: unsupported/unbalanced
  tags and unescaped reserved characters answer 400 "can't parse entities", otherwise the
  returned Message carries the plain text and derived entities. Legacy "Markdown" is not checked.
* Chats the bot writes to are created on first use (no "chat not found"); unknown file_ids are
  rejected like Telegram does, URLs are accepted without being fetched (no network access).
* Webhook replies that contain a method call are ignored; http:// webhook URLs are accepted.
  Deliveries run like Telegram's: up to max_connections (40) at once, one chat at a time.
* Methods known to the Bot API but not implemented answer ``{"ok": true, "result": true}``.
* ``commands`` keys use the scope type; chat-bound scopes append their ids
  (``("chat:-100", None)``, ``("chat_member:-100:7", "de")``) so they do not collide.

Telegram's rules (see :mod:`botcore.testing.flood` for the flood model):

* Flood limits, off unless asked for: ``FakeTelegram(limits=TELEGRAM_LIMITS)`` or
  :meth:`FakeTelegram.set_limits`; past a budget the answer is Telegram's 429 with
  ``parameters.retry_after``, and :attr:`FakeTelegram.flood` counts rejections and violations.
* ``sendMessageDraft`` (private chats only); what the user saw over time is
  :meth:`FakeTelegram.drafts` and :meth:`FakeTelegram.timeline`. A draft disappears when the bot
  sends a message to the same chat and topic, or after 30 s.
* Forum topics: :meth:`FakeTelegram.make_forum` (or ``thread_id=`` on a user message) makes a
  supergroup a forum (``is_forum``) or gives a private chat topics (``has_topics_enabled`` in
  getMe). Topic messages carry ``message_thread_id`` and ``is_topic_message``; General's do not
  (its id 1 is refused as a ``message_thread_id``, as Telegram does); a reply without a thread id
  goes to the replied message's topic; an unknown thread is "message thread not found".
* Messages sent on behalf of a chat (``sender_chat=`` on a user message): a channel's post in a
  group has the channel as ``sender_chat`` and Telegram's placeholder user Channel_Bot
  (``FAKE_CHANNEL``, the same for every channel) as ``from``; an anonymous group admin's has the
  group itself as ``sender_chat`` and GroupAnonymousBot (``ANONYMOUS_ADMIN``) as ``from``.
* Telegram Stars (:mod:`botcore.testing.stars`, as :attr:`FakeTelegram.stars`): ``sendInvoice``
  and ``createInvoiceLink`` in ``XTR`` (subscriptions too), a user who pays
  (``pre_checkout_query``, then ``successful_payment``), refunds, subscription renewals and
  cancellations, ``getStarTransactions``.
* :meth:`FakeTelegram.edit_message` pushes an ``edited_message`` update (the whole message with
  its new text and an ``edit_date``), as Telegram does when a user edits a message.

Standalone (benchmarks): ``python -m botcore.testing.fake_telegram --port 8081 --token T`` also
serves ``POST /_fake/send_message`` (JSON kwargs of send_message), ``/_fake/send_update``,
``/_fake/stats`` and ``/_fake/reset`` so another process can drive it, ``/_fake/set_limits``
(``{"preset": "telegram" | "off", **FloodLimits fields}``; ``--limits telegram`` at start-up)
and ``/_fake/flood`` (the flood counts and 429s given); for benchmarks also
``/_fake/send_messages`` (``{"messages": [kwargs, ...]}`` pushed in one burst) and
``/_fake/chats`` (answer counts and per-chat send/edit counts and times, see :meth:`chat_summary`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import html
import itertools
import json
import logging
import mimetypes
import re
import ssl
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from types import EllipsisType
from typing import Any, Self, TypedDict, Unpack

import aiohttp
from aiohttp import web

from botcore.testing.flood import (
    NO_LIMITS,
    TELEGRAM_LIMITS,
    Admission,
    FloodControl,
    FloodEvent,
    FloodLimits,
    Kind,
    limits_from_json,
)
from botcore.testing.stars import Stars

__all__ = [
    "NO_LIMITS",
    "TELEGRAM_LIMITS",
    "ApiCall",
    "BotMessage",
    "DraftSnapshot",
    "FakeTelegram",
    "FloodControl",
    "FloodEvent",
    "FloodLimits",
    "TimelineEntry",
    "main",
]

log = logging.getLogger(__name__)

JSONDict = dict[str, Any]

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_ENTITIES = 100
"""Formatting entities Telegram keeps in one message or caption: the rest are dropped without an
error, the text kept (observed: rubenlagus/TelegramBots#854, "sent successfully but all tags
after the 100th are ignored"; tdlib/telegram-bot-api#820, "up to 100 ... entities (custom
emojis, bold, hyperlinks...)"). Not in the Bot API docs."""
ENTITY_TYPES = frozenset(
    {
        "mention",
        "hashtag",
        "cashtag",
        "bot_command",
        "url",
        "email",
        "phone_number",
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "spoiler",
        "blockquote",
        "expandable_blockquote",
        "code",
        "pre",
        "text_link",
        "text_mention",
        "custom_emoji",
        "date_time",
    }
)
"""The MessageEntity types of the Bot API; a message sent with another type is refused."""
MAX_DOWNLOAD = 20 * 1024 * 1024
MAX_UPLOAD = 50 * 1024 * 1024
DRAFT_TTL = 30.0
"""Seconds a draft stays on screen without an update ("a temporary 30-second preview")."""
GENERAL_TOPIC = 1
"""The General topic's thread id, which Telegram refuses as a ``message_thread_id``."""
FAKE_CHANNEL = 136817688
"""The user id in ``from`` of every message a channel posts in a group (@Channel_Bot)."""
ANONYMOUS_ADMIN = 1087968824
"""The user id in ``from`` of every message an anonymous group admin sends (@GroupAnonymousBot)."""
_PLACEHOLDERS = {
    FAKE_CHANNEL: {
        "id": FAKE_CHANNEL,
        "is_bot": True,
        "first_name": "Channel",
        "username": "Channel_Bot",
    },
    ANONYMOUS_ADMIN: {
        "id": ANONYMOUS_ADMIN,
        "is_bot": True,
        "first_name": "Group",
        "username": "GroupAnonymousBot",
    },
}
"""The users Telegram puts in ``from`` "for backward compatibility" when a chat is the sender."""

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request: can't parse entities: "
    "Can't find end of the entity starting at byte offset 0",
    403: "Forbidden: bot was blocked by the user",
}
# Update kinds Telegram leaves out unless explicitly listed in allowed_updates.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})


def _real_method_names() -> dict[str, str]:
    """Map lower-cased Bot API method names to their canonical spelling (taken from PTB's Bot)."""
    try:
        from telegram import Bot
    except ImportError:  # pragma: no cover - PTB is a botcore dependency
        return {}
    return {
        name.lower(): name
        for name in dir(Bot)
        if name[:1].islower() and name != name.lower() and callable(getattr(Bot, name))
    }


_KNOWN_METHODS = _real_method_names()

# --------------------------------------------------------------------------- form decoding


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STR_FIELDS = _words(
    "text caption parse_mode caption_parse_mode action callback_query_id url secret_token "
    "language_code description short_description name file_id emoji title performer "
    "file_name query inline_message_id ip_address business_connection_id photo voice audio "
    "document video animation video_note sticker thumbnail question address phone_number "
    "first_name last_name custom_title invite_link message_effect_id"
)
_INT_FIELDS = _words(
    "chat_id message_id from_chat_id offset limit timeout duration reply_to_message_id "
    "message_thread_id user_id width height length max_connections cache_time draft_id icon_color"
)
_JSON_FIELDS = _words(
    "entities caption_entities reply_markup commands scope reply_parameters allowed_updates "
    "link_preview_options media message_ids reaction rights permissions menu_button"
)
_NUMERIC = re.compile(r"-?\d+(\.\d+)?\Z")
_NUMERIC_SUFFIXES = ("_id", "timeout", "limit", "offset", "duration", "width", "height", "date")


def _decode_field(name: str, value: str) -> Any:
    """Decode one form field: PTB JSON-encodes every non-string value into the form."""
    if name in _STR_FIELDS:
        return value
    if name in _INT_FIELDS:
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value  # e.g. chat_id="@channelusername"
    if name in _JSON_FIELDS or value[:1] in ("{", "[") or value in ("true", "false", "null"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if name.endswith(_NUMERIC_SUFFIXES) and _NUMERIC.match(value):
        return json.loads(value)
    return value


# --------------------------------------------------------------------------- text helpers


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit of Telegram entity offsets."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


class _ParseError(Exception):
    """A text could not be parsed; the message is appended to "can't parse entities: "."""


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


_HTML_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s[^<>]*)?)>")
_HTML_ATTR = re.compile(r"""([a-zA-Z-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_HTML_CHARREF = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
_HTML_SIMPLE = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}
_HTML_TAGS = frozenset({*_HTML_SIMPLE, "span", "a", "blockquote", "tg-emoji"})


def _parse_html(text: str) -> tuple[str, list[JSONDict]]:
    """Parse Telegram's HTML subset into (plain text, entities); raise _ParseError if invalid."""
    out: list[str] = []
    pos = 0
    entities: list[JSONDict] = []
    stack: list[tuple[str, int, dict[str, str], int]] = []  # tag, utf16 start, attrs, index
    i, n = 0, len(text)
    while i < n:
        j = min((k for k in (text.find("<", i), text.find("&", i)) if k >= 0), default=n)
        if j > i:
            chunk = text[i:j]
            out.append(chunk)
            pos += utf16_len(chunk)
            i = j
            continue
        if text[i] == "&":
            ref = _HTML_CHARREF.match(text, i)
            char = html.unescape(ref.group()) if ref else "&"
            out.append(char)
            pos += utf16_len(char)
            i = ref.end() if ref else i + 1
            continue
        m = _HTML_TAG.match(text, i)
        if m is None:
            raise _ParseError(f"Unclosed start tag at byte offset {_byte_offset(text, i)}")
        closing, tag = m.group(1) == "/", m.group(2).lower()
        if not closing:
            if tag not in _HTML_TAGS:
                raise _ParseError(
                    f'Unsupported start tag "{tag}" at byte offset {_byte_offset(text, i)}'
                )
            attrs = {
                a.group(1).lower(): a.group(2) or a.group(3) or a.group(4) or ""
                for a in _HTML_ATTR.finditer(m.group(3))
            }
            stack.append((tag, pos, attrs, i))
        else:
            if not stack or stack[-1][0] != tag:
                expected = f', expected "</{stack[-1][0]}>"' if stack else ""
                raise _ParseError(
                    f"Unmatched end tag at byte offset {_byte_offset(text, i)}{expected}, "
                    f'found "</{tag}>"'
                )
            start_tag, start, attrs, _ = stack.pop()
            entity = _html_entity(start_tag, attrs, start, pos - start, stack)
            if entity is not None and entity["length"] > 0:
                entities.append(entity)
        i = m.end()
    if stack:
        raise _ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _html_entity(
    tag: str,
    attrs: dict[str, str],
    offset: int,
    length: int,
    stack: list[tuple[str, int, dict[str, str], int]],
) -> JSONDict | None:
    entity: JSONDict = {"offset": offset, "length": length}
    if tag == "code" and stack and stack[-1][0] == "pre":
        lang = attrs.get("class", "")
        if lang.startswith("language-"):
            stack[-1][2]["language"] = lang.removeprefix("language-")
            return None  # merged into the enclosing <pre>
    if tag in _HTML_SIMPLE:
        entity["type"] = _HTML_SIMPLE[tag]
        if tag == "pre" and attrs.get("language"):
            entity["language"] = attrs["language"]
    elif tag == "span":
        if attrs.get("class") != "tg-spoiler":
            raise _ParseError('Tag "span" must have class "tg-spoiler"')
        entity["type"] = "spoiler"
    elif tag == "a":
        href = attrs.get("href", "")
        if not href:
            return None  # Telegram drops links without a URL
        if href.startswith("tg://user?id="):
            user_id = int(href.removeprefix("tg://user?id=") or 0)
            entity.update(
                type="text_mention", user={"id": user_id, "is_bot": False, "first_name": "User"}
            )
        else:
            entity.update(type="text_link", url=href)
    elif tag == "blockquote":
        entity["type"] = "expandable_blockquote" if "expandable" in attrs else "blockquote"
    else:  # tg-emoji
        entity.update(type="custom_emoji", custom_emoji_id=attrs.get("emoji-id", ""))
    return entity


_MD_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MD_MARKERS = {"*": "bold", "_": "italic", "__": "underline", "~": "strikethrough", "||": "spoiler"}


def _find_unescaped(text: str, delim: str, start: int) -> int:
    i = start
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text.startswith(delim, i):
            return i
        else:
            i += 1
    return -1


def _unescape_md(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL)


def _parse_markdown_v2(text: str) -> tuple[str, list[JSONDict]]:
    """Parse MarkdownV2 into (plain text, entities); raise _ParseError like Telegram would."""
    out: list[str] = []
    pos = 0
    entities: list[JSONDict] = []
    stack: list[tuple[str, int, int]] = []  # marker, utf16 start, index in text
    quote: tuple[str, int] | None = None  # blockquote type, utf16 start
    i, n = 0, len(text)
    line_start = True

    def emit(chunk: str) -> None:
        nonlocal pos
        out.append(chunk)
        pos += utf16_len(chunk)

    def close_quote(end: int) -> None:
        nonlocal quote
        if quote is not None and end > quote[1]:
            entities.append({"type": quote[0], "offset": quote[1], "length": end - quote[1]})
        quote = None

    while i < n:
        c = text[i]
        if line_start:
            line_start = False
            if c == ">" or text.startswith("**>", i):
                if quote is None:
                    kind = "expandable_blockquote" if c == "*" else "blockquote"
                    quote = (kind, pos)
                i += 1 if c == ">" else 3
                continue
            close_quote(pos - 1)  # the quote ended with the previous line (minus its newline)
        if c == "\\":
            if i + 1 >= n:
                raise _ParseError(
                    "Character '\\' is reserved and must be escaped with the preceding '\\'"
                )
            emit(text[i + 1])
            i += 2
            continue
        if c == "\n":
            emit(c)
            line_start = True
            i += 1
            continue
        if c == "`":
            fence = "```" if text.startswith("```", i) else "`"
            end = _find_unescaped(text, fence, i + len(fence))
            if end < 0:
                kind = "Pre" if fence == "```" else "Code"
                raise _ParseError(
                    f"Can't find end of {kind} entity at byte offset {_byte_offset(text, i)}"
                )
            body = text[i + len(fence) : end]
            entity: JSONDict = {"type": "pre" if fence == "```" else "code", "offset": pos}
            if fence == "```":
                first, nl, rest = body.partition("\n")
                if nl and first and not any(ch.isspace() for ch in first):
                    entity["language"] = first
                    body = rest
                elif nl and not first:
                    body = rest
            body = _unescape_md(body)
            emit(body)
            entity["length"] = pos - entity["offset"]
            if entity["length"]:
                entities.append(entity)
            i = end + len(fence)
            continue
        if c == "!" and text.startswith("![", i):
            stack.append(("![", pos, i))
            i += 2
            continue
        if c == "[":
            stack.append(("[", pos, i))
            i += 1
            continue
        if c == "]" and stack and stack[-1][0] in ("[", "!["):
            if not text.startswith("(", i + 1):
                raise _ParseError(
                    f"Can't find end of the entity starting at byte offset "
                    f"{_byte_offset(text, stack[-1][2])}"
                )
            end = _find_unescaped(text, ")", i + 2)
            if end < 0:
                raise _ParseError(f"Can't find end of a url at byte offset {_byte_offset(text, i)}")
            url = _unescape_md(text[i + 2 : end])
            marker, start, _ = stack.pop()
            if marker == "![":
                link: JSONDict = {
                    "type": "custom_emoji",
                    "custom_emoji_id": url.partition("id=")[2],
                }
            else:
                link = {"type": "text_link", "url": url}
            if pos > start:
                entities.append({**link, "offset": start, "length": pos - start})
            i = end + 1
            continue
        marker = ""
        if c == "|" and text.startswith("||", i):
            marker = "||"
        elif c == "_":
            marker = "__" if text.startswith("__", i) else "_"
        elif c in "*~":
            marker = c
        if not marker:
            if c in _MD_RESERVED:
                raise _ParseError(
                    f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
                )
            emit(c)
            i += 1
            continue
        open_at = next((k for k in range(len(stack) - 1, -1, -1) if stack[k][0] == marker), -1)
        if open_at >= 0:
            _, start, _ = stack.pop(open_at)
            if pos > start:
                entities.append(
                    {"type": _MD_MARKERS[marker], "offset": start, "length": pos - start}
                )
        else:
            stack.append((marker, pos, i))
        i += len(marker)
    close_quote(pos)
    if stack:
        raise _ParseError(
            "Can't find end of the entity starting at byte offset "
            f"{_byte_offset(text, stack[-1][2])}"
        )
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


_COMMAND = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
_MENTION = re.compile(r"(?<![\w@/])@[A-Za-z][A-Za-z0-9_]{3,31}\b")


def _auto_entities(text: str) -> list[JSONDict]:
    """The entities Telegram's clients would attach: a leading bot_command and @mentions."""
    entities: list[JSONDict] = []
    command = _COMMAND.match(text)
    if command:
        entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(command[0])})
    for m in _MENTION.finditer(text, command.end() if command else 0):
        entities.append(
            {"type": "mention", "offset": utf16_len(text[: m.start()]), "length": utf16_len(m[0])}
        )
    return entities


def _update_chat(update: JSONDict) -> Any:
    """The chat an update belongs to (its webhook deliveries keep their order), or its id."""
    for value in update.values():
        if isinstance(value, dict):
            message = value.get("message") if "chat" not in value else value
            chat = (message or {}).get("chat") if isinstance(message, dict) else None
            if isinstance(chat, dict) and "id" in chat:
                return chat["id"]
            sender = value.get("from")
            if isinstance(sender, dict) and "id" in sender:
                return ("user", sender["id"])
    return ("update", update.get("update_id"))


def _image_size(data: bytes) -> tuple[int, int]:
    """Width/height of a PNG, GIF or JPEG (best effort; 800x600 when unknown)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                break
            marker, size = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(w), int(h)
            i += 2 + size
    return 800, 600


# --------------------------------------------------------------------------- data classes


@dataclass
class ApiCall:
    """One Bot API request the bot made: decoded params, uploaded files and the outcome."""

    method: str  # canonical spelling when known ("sendMessage"), else as requested
    params: JSONDict
    files: dict[str, bytes]
    time: float  # time.monotonic() at arrival
    status: int = 200  # HTTP status the fake answered
    response: Any = None  # the "result" on success, the error payload otherwise
    file_info: dict[str, tuple[str | None, str | None]] = field(default_factory=dict, repr=False)
    """Per uploaded part: (filename, content type)."""


@dataclass
class BotMessage:
    """A message the bot sent; mutated in place by edits and deletion."""

    message_id: int
    chat_id: int
    kind: str  # "text" | "photo" | "voice" | "document" | "audio" | "video" | ...
    text: str | None  # exactly as sent (caption for media), markup not stripped
    entities: list[JSONDict] = field(default_factory=list)  # given or derived from parse_mode
    parse_mode: str | None = None
    data: bytes | None = None  # uploaded media bytes
    media_ref: str | None = None  # file_id or URL when media was not uploaded
    reply_markup: JSONDict | None = None
    reply_to_message_id: int | None = None
    edits: list[str] = field(default_factory=list)
    deleted: bool = False
    plain: str | None = None  # the text as users see it (parse_mode markup removed)
    raw: JSONDict = field(default_factory=dict, repr=False)  # the Message object last returned
    thread_id: int | None = None  # the forum topic it went to; None: General or no topics
    history: list[tuple[float, str | None]] = field(default_factory=list, repr=False)
    """(time.monotonic(), plain text) when sent and after each edit: what the user saw."""

    @property
    def buttons(self) -> list[JSONDict]:
        """All inline keyboard buttons, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]


@dataclass(frozen=True)
class DraftSnapshot:
    """One sendMessageDraft the bot made: a text the user saw at the bottom of the chat."""

    time: float  # time.monotonic() when it was shown
    chat_id: int
    draft_id: int
    text: str  # as sent ("" shows "Thinking...")
    plain: str  # as the user saw it, formatting removed
    entities: list[JSONDict]
    thread_id: int | None = None


@dataclass(frozen=True)
class TimelineEntry:
    """What the user saw change in a chat, in order: a draft, a message sent, or an edit."""

    time: float  # time.monotonic()
    kind: str  # "draft" | "message" | "edit"
    text: str | None  # plain text (a caption for media; None for media without one)
    thread_id: int | None
    message_id: int | None = None  # for messages and edits
    draft_id: int | None = None  # for drafts


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes


@dataclass
class _Failure:
    status: int
    description: str
    parameters: JSONDict | None
    times: int
    when: Callable[[ApiCall], bool] | None
    disconnect: bool = False


class _ApiError(Exception):
    def __init__(
        self,
        status: int,
        description: str,
        parameters: JSONDict | None = None,
        *,
        disconnect: bool = False,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters
        self.disconnect = disconnect

    def payload(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


_MEDIA_METHODS = {
    "sendphoto": "photo",
    "sendvoice": "voice",
    "sendaudio": "audio",
    "senddocument": "document",
    "sendvideo": "video",
    "sendanimation": "animation",
    "sendvideonote": "video_note",
    "sendsticker": "sticker",
}
_FILE_DIRS = {
    "photo": ("photos", ".jpg"),
    "voice": ("voice", ".oga"),
    "audio": ("music", ".mp3"),
    "document": ("documents", ""),
    "video": ("videos", ".mp4"),
    "animation": ("animations", ".mp4"),
    "video_note": ("video_notes", ".mp4"),
    "sticker": ("stickers", ".webp"),
}

Handler = Callable[[ApiCall], Awaitable[Any]]

# What flood control counts (lower-cased): calls that put or change a message in a chat. A media
# group is one call, counted once (as PTB's AIORateLimiter does). Not counted: reading (getMe,
# getUpdates, getFile...), deleting, answering callbacks, setting commands.
_FLOOD_MESSAGE_METHODS = frozenset(
    {
        "sendmessage",
        "sendmediagroup",
        "senddice",
        "sendlocation",
        "sendvenue",
        "sendcontact",
        "sendpoll",
        "sendinvoice",
        "sendgame",
        "sendpaidmedia",
        "copymessage",
        "copymessages",
        "forwardmessage",
        "forwardmessages",
        "editmessagetext",
        "editmessagecaption",
        "editmessagemedia",
        "editmessagereplymarkup",
        "editmessagelivelocation",
        "stopmessagelivelocation",
        *_MEDIA_METHODS,
    }
)
_SUMMARY_METHODS = frozenset({"sendMessage", "editMessageText", "sendMessageDraft"})
"""What the benchmark's per-chat summary counts: the text a user sees appear and change."""

# A draft is a typing action underneath: the two share a chat's typing budget.
_FLOOD_TYPING_METHODS = frozenset({"sendchataction", "sendmessagedraft"})


# --------------------------------------------------------------------------- the server


class Sender(TypedDict, total=False):
    """Who pushes a message and where: keyword arguments shared by every ``send_*`` method.

    Defaults: user 42 ("Test", language "en") in a private chat with the bot; for a group pass
    ``chat_id`` (negative) and ``chat_type="group"`` or ``"supergroup"``; for a forum topic pass
    ``thread_id`` too.
    """

    user_id: int
    chat_id: int | None
    chat_type: str
    language_code: str | None
    first_name: str
    username: str | None
    reply_to_message_id: int | None
    thread_id: int | None
    """The forum topic it is sent in (the chat becomes a forum with that topic if need be)."""
    sender_chat: int | None
    """Sent on behalf of a chat (groups only): a channel's id (a channel chat, made if unknown;
    ``from`` is Channel_Bot) or the group's own id (an anonymous admin; ``from`` is
    GroupAnonymousBot). ``user_id`` is then only who pressed send, which Telegram does not tell."""


class FakeTelegram:
    """An in-process fake of the Telegram Bot API served by aiohttp on 127.0.0.1.

    The user side pushes updates (send_message, send_voice, ...); the bot side is recorded
    (requests, messages, drafts, commands, chat_actions, webhook); fail() and latency inject
    faults; ``limits`` enforces Telegram's flood limits (off by default: ``NO_LIMITS``).
    """

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        *,
        bot_id: int = 123456,
        bot_username: str = "botcore_test_bot",
        bot_name: str = "Test Bot",
        limits: FloodLimits | None = None,
    ) -> None:
        self.token = token
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.bot_name = bot_name
        self.bot_user: JSONDict = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_name,
            "username": bot_username,
        }
        self.host = "127.0.0.1"
        self.port = 0
        self.latency = 0.0
        # bot side
        self.requests: list[ApiCall] = []
        self.messages: dict[int, list[BotMessage]] = {}
        self.commands: dict[tuple[str, str | None], list[JSONDict]] = {}
        self.chat_actions: list[tuple[int, str]] = []
        self.callback_answers: list[JSONDict] = []
        self.webhook: JSONDict | None = None
        self.webhook_deliveries: list[int] = []  # HTTP status per attempt, 0 = connection error
        self.webhook_retries = 3  # extra attempts per update before it is dropped
        self.webhook_retry_delay = 0.05
        self.webhook_cafile: str | None = None
        """CA certificates (a PEM file) that https webhooks may be signed by, standing in for the
        public CAs Telegram trusts (the system's are trusted too); a certificate uploaded with
        setWebhook is trusted for that webhook, as Telegram does for self-signed ones."""
        self.descriptions: dict[tuple[str, str | None], str] = {}  # (kind, lang) -> text
        self.unhandled_methods: set[str] = set()
        self.flood = FloodControl(limits)
        """Flood limits in force (``flood.limits``) and what they refused: ``flood.violations``,
        ``flood.rejections`` (totals), ``flood.chat_violations[chat_id]``, ``flood.events``."""
        self.has_topics_enabled = False
        """getMe's "forum topic mode in private chats"; make_forum() on a private chat sets it."""
        self.draft_snapshots: list[DraftSnapshot] = []
        # internal state
        self._updates: deque[JSONDict] = deque()
        self._next_update_id = 1
        self._allowed_updates: frozenset[str] | None = None
        self._poll_event = asyncio.Event()
        self._poll_generation = 0
        self._chats: dict[int, JSONDict] = {}
        self._usernames: dict[str, int] = {}
        self._next_message_id: dict[int, int] = {}
        self._bot_msgs: dict[tuple[int, int], BotMessage] = {}
        self._user_msgs: dict[tuple[int, int], JSONDict] = {}
        self._files: dict[str, _StoredFile] = {}
        self._paths: dict[str, _StoredFile] = {}
        self._file_counter = itertools.count(1)
        self._callback_counter = itertools.count(1)
        self._open_callbacks: set[str] = set()
        self._failures: dict[str, list[_Failure]] = {}
        self._slow: dict[str, list[tuple[float, int]]] = {}  # method -> [(seconds, times left)]
        self._revocations = 0
        self._topics: dict[int, dict[int, str]] = {}  # forum chat -> {thread id: topic name}
        self._draft_cleared: dict[tuple[int, int | None], float] = {}  # (chat, thread) -> when
        self._migrated: dict[int, int] = {}  # upgraded group -> its supergroup
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._cursors: dict[int, int] = {}
        self._last_activity = time.monotonic()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._webhook_wakeup = asyncio.Event()
        self._webhook_error: tuple[int, str] | None = None
        self._handlers: dict[str, Handler] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_text,
            "editmessagecaption": self._edit_caption,
            "editmessagereplymarkup": self._edit_reply_markup,
            "deletemessage": self._delete_message,
            "sendchataction": self._send_chat_action,
            "getfile": self._get_file,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "answercallbackquery": self._answer_callback_query,
            "setmydescription": self._set_description,
            "setmyshortdescription": self._set_description,
            "getmydescription": self._get_description,
            "getmyshortdescription": self._get_description,
            "sendmediagroup": self._send_media_group,
            "getchat": self._get_chat,
            "sendmessagedraft": self._send_message_draft,
            "createforumtopic": self._create_forum_topic,
            "deleteforumtopic": self._delete_forum_topic,
            "close": self._accept,
            "logout": self._accept,
        }
        for method in _MEDIA_METHODS:
            self._handlers[method] = self._send_media
        self.stars = Stars(self)
        """Telegram Stars: invoices the bot made, a user who pays, refunds, subscriptions."""
        self._handlers.update(self.stars.handlers())

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start serving on host:port (port 0 picks a free port, see :attr:`port`)."""
        app = web.Application(client_max_size=MAX_UPLOAD + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_download)
        app.router.add_post("/_fake/{action}", self._handle_control)
        # access_log=None: the access log would print request paths, which contain the token.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.host, self.port = host, int(self._runner.addresses[0][1])
        self._closing = False
        self._poll_event = asyncio.Event()  # (re)created in the serving event loop
        self._webhook_wakeup = asyncio.Event()

    async def stop(self) -> None:
        """Stop serving: end pending long polls, the webhook sender and the HTTP server."""
        self._closing = True
        self._wake_pollers()
        await self._stop_webhook_task()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Root URL of the server, e.g. "http://127.0.0.1:PORT"."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Value for ApplicationBuilder.base_url (PTB appends the token)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """Value for ApplicationBuilder.base_file_url (PTB appends the token)."""
        return f"{self.url}/file/bot"

    # ------------------------------------------------------------------ user side

    def _user(
        self, user_id: int, first_name: str, username: str | None, language_code: str | None
    ) -> JSONDict:
        user: JSONDict = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        return user

    def _chat(
        self, chat_id: int, chat_type: str | None = None, user: JSONDict | None = None
    ) -> JSONDict:
        chat = self._chats.get(chat_id)
        if chat is None or (chat_type is not None and chat["type"] != chat_type):
            self._topics.pop(chat_id, None)  # a new chat (or a migrated one) has no topics
            kind = chat_type or (
                "private" if chat_id > 0 else "supergroup" if chat_id < -(10**12) else "group"
            )
            chat = {"id": chat_id, "type": kind}
            if kind == "private":
                chat["first_name"] = (user or {}).get("first_name", "User")
                if user and user.get("username"):
                    chat["username"] = user["username"]
            else:
                chat["title"] = f"Test {kind.capitalize()} {chat_id}"
            self._chats[chat_id] = chat
        return chat

    def _new_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _lookup_message(self, chat_id: int, message_id: int) -> JSONDict | None:
        bot_msg = self._bot_msgs.get((chat_id, message_id))
        if bot_msg is not None:
            return None if bot_msg.deleted else bot_msg.raw
        return self._user_msgs.get((chat_id, message_id))

    def _reply_copy(self, chat_id: int, message_id: int | None) -> JSONDict | None:
        if message_id is None:
            return None
        target = self._lookup_message(chat_id, message_id)
        if target is None:
            return None
        return {k: v for k, v in target.items() if k != "reply_to_message"}

    def _user_message(
        self,
        *,
        user_id: int = 42,
        chat_id: int | None = None,
        chat_type: str = "private",
        language_code: str | None = "en",
        first_name: str = "Test",
        username: str | None = None,
        reply_to_message_id: int | None = None,
        thread_id: int | None = None,
        sender_chat: int | None = None,
    ) -> JSONDict:
        """A new user message's common fields; the defaults of every `send_*` method."""
        user = self._user(user_id, first_name, username, language_code)
        cid = user_id if chat_id is None else chat_id
        known = self._chats.get(cid)
        if cid < 0 and chat_type == "private" and known is not None:
            chat_type = known["type"]  # e.g. a forum made by make_forum(): no need to repeat it
        chat = self._chat(cid, chat_type, user)
        as_chat: JSONDict | None = None
        if sender_chat is not None:
            if chat["type"] not in ("group", "supergroup"):
                raise ValueError("only group messages are sent on behalf of a chat")
            as_chat = chat if sender_chat == cid else self._chat(sender_chat, "channel")
            user = _PLACEHOLDERS[ANONYMOUS_ADMIN if sender_chat == cid else FAKE_CHANNEL]
        if thread_id is not None and thread_id not in self._topics.get(cid, {}):
            self.make_forum(cid, topics={thread_id: f"Topic {thread_id}"})
        message: JSONDict = {
            "message_id": self._new_message_id(cid),
            "date": int(time.time()),
            "chat": chat,
        }
        if chat_type == "channel":
            message["sender_chat"] = message["chat"]
        else:
            message["from"] = user
            if as_chat is not None:
                message["sender_chat"] = as_chat
        reply = self._reply_copy(cid, reply_to_message_id)
        if reply is not None:
            message["reply_to_message"] = reply
        if thread_id is None and reply is not None and reply.get("is_topic_message"):
            thread_id = reply.get("message_thread_id")  # a reply stays in its topic
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        elif reply is not None and chat["type"] == "supergroup":
            # A reply outside topics (General included) starts or joins a reply thread: Telegram
            # gives its root as message_thread_id, without is_topic_message. It is no topic, and
            # sending to it answers "message thread not found" (a classic trap for bots).
            message["message_thread_id"] = reply.get("message_thread_id", reply["message_id"])
        return message

    def make_forum(self, chat_id: int, topics: dict[int, str] | None = None) -> dict[int, str]:
        """Make a supergroup a forum (``is_forum``), or give a private chat topics; add topics.

        ``topics`` maps thread ids to names (General, id 1, always exists in a forum and is not
        listed). A negative ``chat_id`` becomes a supergroup; a positive one is a private chat
        with the bot, and getMe then reports ``has_topics_enabled``. Returns the chat's topics.
        """
        existing = self._chats.get(chat_id, {}).get("type")
        if existing not in (None, "private", "supergroup"):
            raise ValueError(f"a {existing} has no topics: only supergroups and private chats")
        if chat_id > 0:
            self._chat(chat_id, "private")
            self.has_topics_enabled = True
        else:
            chat = self._chat(chat_id, "supergroup")
            chat["is_forum"] = True
            # Message id 1 stands for General: later topics and messages come after it.
            self._next_message_id[chat_id] = max(self._next_message_id.get(chat_id, 1), 2)
        known = self._topics.setdefault(chat_id, {})
        for thread_id, name in (topics or {}).items():
            if thread_id == GENERAL_TOPIC and chat_id < 0:
                raise ValueError("thread id 1 is the General topic, which needs no making")
            known[int(thread_id)] = name
            # A topic's id is the id of the message that created it: later ones come after.
            self._next_message_id[chat_id] = max(
                self._next_message_id.get(chat_id, 1), int(thread_id) + 1
            )
        return dict(known)

    def forum_topics(self, chat_id: int) -> dict[int, str]:
        """The topics of a forum or of a private chat with topics: {thread id: name}."""
        return dict(self._topics.get(chat_id, {}))

    async def _push_message(self, message: JSONDict) -> JSONDict:
        chat = message["chat"]
        self._user_msgs[(chat["id"], message["message_id"])] = message
        key = "channel_post" if chat["type"] == "channel" else "message"
        await self.send_update({key: message})
        return message

    async def send_message(
        self,
        text: str,
        *,
        entities: list[JSONDict] | None = None,
        **sender: Unpack[Sender],
    ) -> JSONDict:
        """Push a text message from a user; commands and @mentions get entities automatically."""
        message = self._user_message(**sender)
        message["text"] = text
        ents = _auto_entities(text) if entities is None else entities
        if ents:
            message["entities"] = ents
        return await self._push_message(message)

    async def edit_message(
        self, message: JSONDict, text: str, *, entities: list[JSONDict] | None = None
    ) -> JSONDict:
        """Push the ``edited_message`` update of a user editing ``message`` (as a ``send_*``
        returned it) to say ``text`` (its caption, for a message with one): the whole message
        again, with an ``edit_date``. Returns the edited message."""
        edited = {k: v for k, v in message.items() if k not in ("entities", "caption_entities")}
        field, entity_field = (
            ("caption", "caption_entities")
            if "caption" in message
            else (
                "text",
                "entities",
            )
        )
        edited[field] = text
        ents = _auto_entities(text) if entities is None else entities
        if ents:
            edited[entity_field] = ents
        edited["edit_date"] = max(int(time.time()), message["date"])
        chat = message["chat"]
        self._user_msgs[(chat["id"], message["message_id"])] = edited
        key = "edited_channel_post" if chat["type"] == "channel" else "edited_message"
        await self.send_update({key: edited})
        return edited

    async def send_voice(
        self,
        data: bytes,
        *,
        duration: int = 1,
        mime_type: str = "audio/ogg",
        kind: str = "voice",
        caption: str | None = None,
        file_name: str | None = None,
        **sender: Unpack[Sender],
    ) -> JSONDict:
        """Push a voice/audio/video_note/document message whose bytes the bot can download."""
        if kind not in ("voice", "audio", "video_note", "document"):
            raise ValueError(f"unsupported kind {kind!r}")
        message = self._user_message(**sender)
        suffix = mimetypes.guess_extension(mime_type) or ""
        if file_name and "." in file_name:
            suffix = "." + file_name.rsplit(".", 1)[1]
        stored = self._store(data, kind, suffix)
        meta = {"duration": duration, "mime_type": mime_type, "file_name": file_name}
        message[kind] = self._media_object(kind, stored, meta)
        if caption:
            message["caption"] = caption
            if entities := _auto_entities(caption):  # mentions, like Telegram's own
                message["caption_entities"] = entities
        return await self._push_message(message)

    async def send_photo(
        self,
        data: bytes,
        *,
        caption: str | None = None,
        **sender: Unpack[Sender],
    ) -> JSONDict:
        """Push a photo message: a thumbnail and a full-size PhotoSize (largest last)."""
        message = self._user_message(**sender)
        full = self._store(data, "photo", ".jpg")
        thumb = self._store(data, "photo", ".jpg")
        width, height = _image_size(data)
        scale = max(width, height) / 90 or 1
        message["photo"] = [
            {
                "file_id": thumb.file_id,
                "file_unique_id": thumb.file_unique_id,
                "width": max(1, int(width / scale)),
                "height": max(1, int(height / scale)),
                "file_size": len(data),
            },
            {
                "file_id": full.file_id,
                "file_unique_id": full.file_unique_id,
                "width": width,
                "height": height,
                "file_size": len(data),
            },
        ]
        if caption:
            message["caption"] = caption
            if entities := _auto_entities(caption):  # mentions, like Telegram's own
                message["caption_entities"] = entities
        return await self._push_message(message)

    async def send_callback_query(
        self,
        message: BotMessage,
        data: str | None = None,
        *,
        button_text: str | None = None,
        user_id: int = 42,
        first_name: str = "Test",
        username: str | None = None,
        language_code: str | None = "en",
    ) -> JSONDict:
        """Press an inline button of a bot message (by callback ``data`` or ``button_text``)."""
        if button_text is not None:
            matches = [b for b in message.buttons if b.get("text") == button_text]
            if not matches:
                raise AssertionError(f"no button {button_text!r} in {message.buttons}")
            data = matches[0].get("callback_data")
        query_id = f"{next(self._callback_counter)}{user_id}"
        self._open_callbacks.add(query_id)
        query: JSONDict = {
            "id": query_id,
            "from": self._user(user_id, first_name, username, language_code),
            "chat_instance": str(message.chat_id),
            "message": message.raw,
        }
        if data is not None:
            query["data"] = data
        update = await self.send_update({"callback_query": query})
        return update

    async def send_update(self, update: JSONDict) -> JSONDict:
        """Push any raw update (assigning update_id if missing) to getUpdates or the webhook."""
        update_id = update.get("update_id")
        if update_id is None:
            update = {"update_id": self._next_update_id, **update}
        self._next_update_id = max(self._next_update_id, update["update_id"] + 1)
        self._updates.append(update)
        self._wake_pollers()
        self._webhook_wakeup.set()
        self._notify()
        return update

    def delete_message(self, chat_id: int, message_id: int) -> None:
        """A user (or an admin) deletes a message, the bot's included: editing it then answers
        "message to edit not found", as Telegram does."""
        message = self._bot_msgs.get((chat_id, message_id))
        if message is not None:
            message.deleted = True
        else:
            self._user_msgs.pop((chat_id, message_id), None)

    async def migrate_group(self, chat_id: int, *, user_id: int = 42) -> int:
        """Upgrade a group to a supergroup, as Telegram does when a group gets a public link,
        topics or more admin rights: the group gets a service message with
        ``migrate_to_chat_id``, the new supergroup one with ``migrate_from_chat_id``, and every
        later call that names the old id is refused with 400 and ``parameters.migrate_to_chat_id``
        (python-telegram-bot's ``ChatMigrated``). Returns the supergroup's id."""
        old = self._chat(chat_id)
        if old["type"] != "group":
            raise ValueError("only a group (not a supergroup or a private chat) is migrated")
        new_id = -(10**12) - abs(chat_id)  # supergroup ids are -100xxxxxxxxxx
        user = self._user(user_id, "Test", None, "en")
        date = int(time.time())
        await self._push_message(
            {
                "message_id": self._new_message_id(chat_id),
                "date": date,
                "chat": old,
                "from": user,
                "migrate_to_chat_id": new_id,
            }
        )
        self._migrated[chat_id] = new_id
        new = self._chat(new_id, "supergroup")
        new["title"] = old.get("title", new["title"])
        await self._push_message(
            {
                "message_id": self._new_message_id(new_id),
                "date": date,
                "chat": new,
                "from": user,
                "migrate_from_chat_id": chat_id,
            }
        )
        return new_id

    def add_file(self, data: bytes, *, file_path_suffix: str = "") -> tuple[str, str]:
        """Store bytes as a downloadable file for hand-made updates: (file_id, file_unique_id)."""
        stored = self._store(data, "document", file_path_suffix)
        return stored.file_id, stored.file_unique_id

    def _store(self, data: bytes, kind: str, suffix: str = "") -> _StoredFile:
        n = next(self._file_counter)
        folder, default_suffix = _FILE_DIRS.get(kind, ("documents", ""))
        path = f"{folder}/file_{n}{suffix or default_suffix}"
        stored = _StoredFile(f"FAKE-{kind}-{n:06d}", f"uniq{n:06d}", path, data)
        self._files[stored.file_id] = stored
        self._paths[path] = stored
        return stored

    def _media_object(self, kind: str, stored: _StoredFile, meta: JSONDict) -> Any:
        obj: JSONDict = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
        }
        if kind == "photo":
            width, height = _image_size(stored.data)
            return [{**obj, "width": width, "height": height}]
        duration = meta.get("duration") or 1
        if kind in ("voice", "audio", "video", "animation", "video_note"):
            obj["duration"] = duration
        if kind in ("video", "animation"):
            obj.update(width=meta.get("width") or 640, height=meta.get("height") or 360)
        if kind == "video_note":
            obj["length"] = meta.get("length") or 240
        if kind == "sticker":
            obj.update(type="regular", width=512, height=512, is_animated=False, is_video=False)
        if kind in ("voice", "audio", "document", "video", "animation"):
            default_mime = {
                "voice": "audio/ogg",
                "audio": "audio/mpeg",
                "video": "video/mp4",
                "animation": "video/mp4",
            }.get(kind)
            mime = meta.get("mime_type") or default_mime
            if mime:
                obj["mime_type"] = mime
        if kind in ("audio", "document", "video", "animation") and meta.get("file_name"):
            obj["file_name"] = meta["file_name"]
        if kind == "audio":
            for key in ("title", "performer"):
                if meta.get(key):
                    obj[key] = meta[key]
        return obj

    # ------------------------------------------------------------------ bot side inspection

    def calls(self, method: str) -> list[ApiCall]:
        """All recorded calls of ``method`` (case-insensitive), in order."""
        wanted = method.lower()
        return [call for call in self.requests if call.method.lower() == wanted]

    @property
    def pending_updates(self) -> int:
        """Updates the bot has not confirmed yet (Telegram sends them again to the next
        getUpdates; a getUpdates with a higher offset forgets them)."""
        return len(self._updates)

    def bot_messages(self, chat_id: int) -> list[BotMessage]:
        """Messages the bot sent to ``chat_id``, in order (deleted ones included, flagged)."""
        return list(self.messages.get(chat_id, ()))

    def drafts(
        self, chat_id: int, thread_id: int | EllipsisType | None = ...
    ) -> list[DraftSnapshot]:
        """Every draft the bot showed in ``chat_id`` (in one topic if ``thread_id`` is given)."""
        return [
            d
            for d in self.draft_snapshots
            if d.chat_id == chat_id and (thread_id is ... or d.thread_id == thread_id)
        ]

    def current_draft(self, chat_id: int, thread_id: int | None = None) -> DraftSnapshot | None:
        """The draft on screen now: the last one, unless a message replaced it or 30 s passed."""
        shown = self.drafts(chat_id, thread_id)
        if not shown:
            return None
        last = shown[-1]
        cleared = self._draft_cleared.get((chat_id, thread_id), float("-inf"))
        if cleared >= last.time or time.monotonic() - last.time > DRAFT_TTL:
            return None
        return last

    def timeline(
        self, chat_id: int, thread_id: int | EllipsisType | None = ...
    ) -> list[TimelineEntry]:
        """What the user saw change, in order: drafts, messages sent and their edits."""
        entries = [
            TimelineEntry(d.time, "draft", d.plain, d.thread_id, draft_id=d.draft_id)
            for d in self.drafts(chat_id, thread_id)
        ]
        for message in self.messages.get(chat_id, ()):
            if thread_id is not ... and message.thread_id != thread_id:
                continue
            for number, (when, plain) in enumerate(message.history):
                kind = "message" if number == 0 else "edit"
                entries.append(
                    TimelineEntry(when, kind, plain, message.thread_id, message.message_id)
                )
        entries.sort(key=lambda entry: entry.time)
        return entries

    def set_limits(self, limits: FloodLimits | None = None, **changes: Any) -> FloodLimits:
        """Change the flood limits now: ``set_limits(TELEGRAM_LIMITS)``, ``set_limits(None)``
        (off), or ``set_limits(per_chat=2.0)`` to change fields of the limits in force."""
        base = self.flood.limits if limits is None and changes else limits or NO_LIMITS
        self.flood.limits = replace(base, **changes)
        return self.flood.limits

    def reset(self) -> None:
        """Forget recorded calls, messages, drafts and flood counts (e.g. between benchmark
        rounds) and the Stars payments; keeps files, forums and the limits."""
        self.requests.clear()
        self.messages.clear()
        self.draft_snapshots.clear()
        self._draft_cleared.clear()
        self.flood.reset()
        self.chat_actions.clear()
        self.callback_answers.clear()
        self.webhook_deliveries.clear()
        self.stars = Stars(self)
        self._handlers.update(self.stars.handlers())
        self._cursors.clear()

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        poll_interval: float | None = None,
    ) -> None:
        """Wait until ``predicate()`` holds; it is re-checked after every Bot API call.

        Pass ``poll_interval`` to also re-check periodically, for predicates on state that
        changes without a Bot API call (e.g. what an error handler recorded in the bot).
        """
        if predicate():
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AssertionError(
                        f"condition not met within {timeout}s; {self._recent_calls()}"
                    )
                step = remaining if poll_interval is None else min(poll_interval, remaining)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), step)
                if future.done():
                    future.result()  # re-raises an exception from the predicate
                    return
                if predicate():
                    return
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    async def next_message(
        self,
        chat_id: int,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> BotMessage:
        """The next bot message in ``chat_id`` not yet returned here (a per-chat cursor)."""
        cursor = self._cursors.get(chat_id, 0)
        try:
            await self.wait_for(
                lambda: len(self.messages.get(chat_id, ())) > cursor, timeout=timeout
            )
        except AssertionError:
            sent = self.messages.get(chat_id, [])
            dump = "\n".join(f"  #{m.message_id} {m.kind}: {m.text!r}" for m in sent) or "  none"
            raise AssertionError(
                f"no new bot message in chat {chat_id} within {timeout}s "
                f"({cursor} already consumed). Bot messages in this chat:\n{dump}\n"
                f"{self._recent_calls()}"
            ) from None
        self._cursors[chat_id] = cursor + 1
        return self.messages[chat_id][cursor]

    async def reply_to(
        self,
        text: str,
        *,
        settle: float = 0.0,
        timeout: float = 5.0,  # noqa: ASYNC109
        **kwargs: Any,
    ) -> BotMessage:
        """Send ``text`` as a user and return the bot's next message in that chat.

        With ``settle`` > 0, also wait until no Bot API call happened for ``settle`` seconds,
        so that streamed edits are finished (the returned BotMessage reflects them).
        """
        message = await self.send_message(text, **kwargs)
        reply = await self.next_message(message["chat"]["id"], timeout=timeout)
        if settle > 0:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (quiet := settle - (time.monotonic() - self._last_activity)) > 0:
                if loop.time() >= deadline:
                    break
                await asyncio.sleep(quiet)
        return reply

    def _recent_calls(self, count: int = 10) -> str:
        lines = []
        for call in self.requests[-count:]:
            outcome = "ok" if call.status == 200 else f"{call.status} {call.response!r}"
            lines.append(f"  {call.method} {_short(call.params)} -> {outcome}")
        return "Last Bot API calls:\n" + ("\n".join(lines) or "  none")

    def _notify(self) -> None:
        if not self._waiters:
            return
        for entry in list(self._waiters):
            predicate, future = entry
            if future.done():
                continue
            try:
                if predicate():
                    future.set_result(None)
            except Exception as exc:  # surface predicate bugs in the waiting test
                future.set_exception(exc)

    # ------------------------------------------------------------------ fault injection

    def fail(
        self,
        method: str,
        *,
        status: int = 429,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        when: Callable[[ApiCall], bool] | None = None,
        disconnect: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (matching ``when``) fail like Telegram.

        429 always carries ``parameters.retry_after`` (default 1), as the real API does.
        ``disconnect=True`` drops the connection instead of answering (a connection reset: the
        call is recorded with status 0 and has no effect).
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        if description is None:
            if status == 429:
                description = f"Too Many Requests: retry after {retry_after}"
            else:
                description = _DEFAULT_DESCRIPTIONS.get(status) or _phrase(status)
        parameters = {"retry_after": retry_after} if retry_after is not None else None
        failure = _Failure(status, description, parameters, times, when, disconnect)
        self._failures.setdefault(method.lower(), []).append(failure)

    def slow(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` ``seconds`` late, having acted on each at
        once, as an overloaded Telegram does: a client that stops waiting has still sent it."""
        self._slow.setdefault(method.lower(), []).append((seconds, times))

    def _slow_answer(self, key: str) -> float:
        queue = self._slow.get(key)
        if not queue:
            return 0.0
        seconds, times = queue[0]
        if times <= 1:
            queue.pop(0)
        else:
            queue[0] = (seconds, times - 1)
        return seconds

    def revoke_token(self) -> str:
        """What /revoke in @BotFather does: the current token is refused (401 Unauthorized) from
        now on; returns the new one, which the fake accepts instead."""
        self._revocations += 1
        self.token = f"{self.bot_id}:NEW-TOKEN-{self._revocations}"
        return self.token

    def _injected_failure(self, key: str, call: ApiCall) -> _ApiError | None:
        failures = self._failures.get(key)
        if not failures:
            return None
        for failure in failures:
            if failure.when is None or failure.when(call):
                failure.times -= 1
                if failure.times <= 0:
                    failures.remove(failure)
                return _ApiError(
                    failure.status,
                    failure.description,
                    failure.parameters,
                    disconnect=failure.disconnect,
                )
        return None

    # ------------------------------------------------------------------ HTTP plumbing

    async def _handle_api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _json_response(
                401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            )
        requested = request.match_info["method"]
        key = requested.lower()
        if key not in self._handlers and key not in _KNOWN_METHODS:
            return _json_response(
                404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
            )
        try:
            params, files, file_info = await _read_params(request)
        except ValueError as exc:
            return _json_response(400, _bad(str(exc)).payload())
        call = ApiCall(
            _KNOWN_METHODS.get(key, requested), params, files, time.monotonic(), file_info=file_info
        )
        self.requests.append(call)
        self._last_activity = call.time
        if self.latency > 0 and key != "getupdates":
            await asyncio.sleep(self.latency)
        taken: Admission | None = None
        try:
            error = self._injected_failure(key, call)
            if error is not None:
                raise error
            taken = self._admit(key, call)
            handler = self._handlers.get(key)
            if handler is None:
                if key not in self.unhandled_methods:
                    log.info("fake Telegram: unhandled method %s answered true", call.method)
                    self.unhandled_methods.add(key)
                call.response = True
            else:
                call.response = await handler(call)
            response = _json_response(200, {"ok": True, "result": call.response})
            late = self._slow_answer(key)
            if late:
                await asyncio.sleep(late)
        except _ApiError as exc:
            if taken is not None:  # refused for another reason: the call used no budget
                self.flood.give_back(taken)
            if exc.disconnect and request.transport is not None:
                call.status, call.response = 0, None
                request.transport.abort()
                self._notify()
                return web.Response(status=500)  # never sent: the connection is gone
            call.status, call.response = exc.status, exc.payload()
            log.debug("fake Telegram: %s -> %d %s", call.method, exc.status, exc.description)
            response = _json_response(exc.status, call.response)
        except Exception:
            log.exception("fake Telegram: internal error in %s", call.method)
            call.status = 500
            call.response = {"ok": False, "error_code": 500, "description": "Internal Server Error"}
            response = _json_response(500, call.response)
        self._last_activity = time.monotonic()
        self._notify()
        return response

    def _admit(self, key: str, call: ApiCall) -> Admission | None:
        """Take the call's flood budget; raise Telegram's 429 if it has none left."""
        if not self.flood.limits.enabled:
            return None
        kind: Kind
        if key in _FLOOD_TYPING_METHODS:
            kind = "typing"
        elif key in _FLOOD_MESSAGE_METHODS:
            kind = "message"
        else:
            return None
        chat_id: int | None = None
        if call.params.get("chat_id") is not None:
            try:
                chat_id = self._resolve_chat_id(call.params["chat_id"])
            except _ApiError:
                return None  # the handler answers the bad chat_id
        elif not call.params.get("inline_message_id"):
            return None
        chat_type = self._chats.get(chat_id, {}).get("type") if chat_id is not None else None
        group = chat_id is not None and (
            chat_type in ("group", "supergroup", "channel") or (chat_type is None and chat_id < 0)
        )
        refused, taken = self.flood.admit(
            call.method,
            chat_id,
            kind=kind,
            group=group,
            paid=bool(call.params.get("allow_paid_broadcast")),
        )
        if refused is not None:
            raise _ApiError(
                429,
                f"Too Many Requests: retry after {refused.retry_after}",
                {"retry_after": refused.retry_after},
            )
        return taken

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _json_response(
                401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            )
        stored = self._paths.get(request.match_info["path"])
        if stored is None:
            return _json_response(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _handle_control(self, request: web.Request) -> web.Response:
        """Out-of-process control for benchmarks: POST /_fake/{send_message|send_update|stats}."""
        action = request.match_info["action"]
        body = await request.json() if request.can_read_body else {}
        if action == "send_message":
            result: Any = await self.send_message(**body)
        elif action == "send_update":
            result = await self.send_update(body)
        elif action == "stats":
            result = {
                "requests": len(self.requests),
                "messages": sum(len(v) for v in self.messages.values()),
                "pending_updates": len(self._updates),
                "flood_violations": self.flood.violations,
                "flood_rejections": self.flood.rejections,
            }
        elif action == "reset":
            self.reset()
            result = True
        elif action == "send_messages":
            result = await self.send_messages(body.get("messages") or [])
        elif action == "chats":
            result = self.chat_summary(body.get("text"), detail=bool(body.get("detail", True)))
        elif action == "set_limits":
            try:
                result = dataclasses.asdict(self.set_limits(limits_from_json(body)))
            except (TypeError, ValueError) as exc:
                return _json_response(400, {"ok": False, "description": str(exc)})
        elif action == "flood":
            result = {
                "limits": dataclasses.asdict(self.flood.limits),
                "violations": self.flood.violations,
                "rejections": self.flood.rejections,
                "events": [dataclasses.asdict(event) for event in self.flood.events],
            }
        else:
            return _json_response(404, {"ok": False, "description": "unknown control action"})
        return _json_response(200, {"ok": True, "result": result})

    # ------------------------------------------------------------------ benchmark control

    async def send_messages(self, messages: list[JSONDict]) -> JSONDict:
        """Push many send_message kwargs in one burst; ``time`` is when they were all queued."""
        for kwargs in messages:
            await self.send_message(**kwargs)
        return {"count": len(messages), "time": time.monotonic()}

    def chat_summary(self, text: str | None = None, *, detail: bool = True) -> JSONDict:
        """What benchmarks measure, scanned from the records: times are ``time.monotonic()``.

        ``answers`` counts bot messages now showing ``text`` (all text messages when None);
        ``first_get_updates`` is the first getUpdates arrival, ``first_set_webhook`` the first
        setWebhook (a bot in webhook mode is ready then); with ``detail``, ``chats`` maps
        each chat to its sendMessage/editMessageText counts, first send and last write times,
        and ``others``: the first three messages not showing ``text`` (None for media).
        """
        wanted = None if text is None else text.strip()
        answers: dict[int, int] = {}
        others: dict[int, list[str | None]] = {}
        for chat_id, messages in self.messages.items():
            shown = [m.plain if m.kind == "text" else None for m in messages]
            hits = [p is not None and (wanted is None or p.strip() == wanted) for p in shown]
            answers[chat_id] = sum(hits)
            others[chat_id] = [p for p, hit in zip(shown, hits, strict=True) if not hit][:3]
        first_poll = next((c.time for c in self.requests if c.method == "getUpdates"), None)
        first_hook = next((c.time for c in self.requests if c.method == "setWebhook"), None)
        summary: JSONDict = {
            "now": time.monotonic(),
            "first_get_updates": first_poll,
            "first_set_webhook": first_hook,
            "answers": sum(answers.values()),
        }
        if detail:
            chats: dict[int, JSONDict] = {}
            for call in self.requests:
                ok = call.status == 200 and call.params.get("chat_id") is not None
                if not ok or call.method not in _SUMMARY_METHODS:
                    continue
                chat_id = self._resolve_chat_id(call.params["chat_id"])
                row = chats.setdefault(
                    chat_id,
                    {
                        "sends": 0,
                        "edits": 0,
                        "drafts": 0,
                        "first_send": None,
                        "first_text": None,  # a message or a draft: the first text seen
                        "last_write": 0.0,
                    },
                )
                if row["first_text"] is None:
                    row["first_text"] = call.time
                if call.method == "sendMessage":
                    row["sends"] += 1
                    if row["first_send"] is None:
                        row["first_send"] = call.time
                elif call.method == "sendMessageDraft":
                    row["drafts"] += 1
                    continue  # a draft is no answer: the answer is written by the final message
                else:
                    row["edits"] += 1
                row["last_write"] = max(row["last_write"], call.time)
            for chat_id, row in chats.items():
                row["answers"] = answers.get(chat_id, 0)
                row["others"] = others.get(chat_id, [])
            summary["chats"] = chats
        return summary

    # ------------------------------------------------------------------ updates

    def _wake_pollers(self) -> None:
        self._poll_event.set()
        self._poll_event = asyncio.Event()

    def _confirm(self, offset: int) -> None:
        updates = self._updates
        if offset < 0:
            while len(updates) > -offset:
                updates.popleft()
            return
        while updates and updates[0]["update_id"] < offset:
            updates.popleft()

    def _allowed(self, update: JSONDict) -> bool:
        kind = next((k for k in update if k != "update_id"), "")
        if self._allowed_updates is None:
            return kind not in _OPT_IN_UPDATES
        return kind in self._allowed_updates

    def _take(self, limit: int) -> list[JSONDict]:
        batch: list[JSONDict] = []
        dropped = False
        for update in self._updates:
            if len(batch) >= limit:
                break
            if self._allowed(update):
                batch.append(update)
            else:
                dropped = True
        if dropped:  # Telegram never stores updates of kinds the bot did not ask for
            self._updates = deque(u for u in self._updates if self._allowed(u))
        return batch

    def _set_allowed(self, allowed: Any) -> None:
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else None

    async def _get_updates(self, call: ApiCall) -> Any:
        if self.webhook is not None:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        p = call.params
        if p.get("offset") is not None:
            self._confirm(int(p["offset"]))
        self._set_allowed(p.get("allowed_updates"))
        limit = min(max(int(p.get("limit") or 100), 1), 100)
        timeout = max(float(p.get("timeout") or 0), 0.0)
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_pollers()  # a newer getUpdates terminates an older long poll, like Telegram
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != self._poll_generation:
                raise _ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make "
                    "sure that only one bot instance is running",
                )
            batch = self._take(limit)
            remaining = deadline - loop.time()
            if batch or self._closing or remaining <= 0:
                return batch
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_event.wait(), remaining)

    # ------------------------------------------------------------------ webhook

    async def _set_webhook(self, call: ApiCall) -> Any:
        p = call.params
        url = str(p.get("url") or "")
        if not url:
            return await self._delete_webhook(call)
        if not url.startswith(("http://", "https://")):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        secret = p.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _bad("secret token contains unallowed characters")
        if p.get("drop_pending_updates"):
            self._updates.clear()
        self._set_allowed(p.get("allowed_updates"))
        self.webhook = {
            "url": url,
            "secret_token": secret,
            "max_connections": int(p.get("max_connections") or 40),
            "allowed_updates": p.get("allowed_updates"),
            "ip_address": p.get("ip_address"),
            "drop_pending_updates": bool(p.get("drop_pending_updates")),
            "certificate": call.files.get("certificate"),
        }
        self._webhook_error = None
        self._wake_pollers()
        await self._stop_webhook_task()
        # Another setWebhook may have started a sender while this one waited (one is enough: it
        # reads self.webhook for each delivery), or the server may be stopping.
        if self._webhook_task is None and not self._closing:
            self._webhook_task = asyncio.create_task(self._deliver_webhooks())
        return True

    async def _delete_webhook(self, call: ApiCall) -> Any:
        self.webhook = None
        await self._stop_webhook_task()
        if call.params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, call: ApiCall) -> Any:
        info: JSONDict = {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook is not None:
            info["url"] = self.webhook["url"]
            info["has_custom_certificate"] = self.webhook["certificate"] is not None
            info["max_connections"] = self.webhook["max_connections"]
            if self.webhook["allowed_updates"]:
                info["allowed_updates"] = self.webhook["allowed_updates"]
            if self.webhook["ip_address"]:
                info["ip_address"] = self.webhook["ip_address"]
        if self._webhook_error is not None:
            info["last_error_date"], info["last_error_message"] = self._webhook_error
        return info

    async def _stop_webhook_task(self) -> None:
        task, self._webhook_task = self._webhook_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver_webhooks(self) -> None:
        """POST pending updates to the webhook like Telegram: up to ``max_connections`` at once,
        one chat's updates one at a time and in order; a failed delivery is retried."""
        inflight: dict[int, asyncio.Task[None]] = {}  # id(update) -> its delivery
        busy: set[Any] = set()  # chats with an update in flight

        def done(update: JSONDict, chat: Any, _task: object = None) -> None:
            inflight.pop(id(update), None)
            busy.discard(chat)
            for i, pending in enumerate(self._updates):
                if pending is update:
                    del self._updates[i]
                    break
            self._webhook_wakeup.set()
            self._notify()

        connector = aiohttp.TCPConnector(limit=0, ssl=self._webhook_tls())
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            try:
                while self.webhook is not None:
                    self._webhook_wakeup.clear()
                    limit = self.webhook["max_connections"]
                    for update in list(self._updates):
                        if len(inflight) >= limit:
                            break
                        if id(update) in inflight:
                            continue
                        if not self._allowed(update):
                            done(update, None)
                            continue
                        chat = _update_chat(update)
                        if chat in busy:  # keeps the chat's order: wait for the one in flight
                            continue
                        busy.add(chat)
                        task = asyncio.create_task(self._deliver_webhook(session, update))
                        task.add_done_callback(functools.partial(done, update, chat))
                        inflight[id(update)] = task
                    await self._webhook_wakeup.wait()
            finally:
                for task in inflight.values():
                    task.cancel()
                await asyncio.gather(*inflight.values(), return_exceptions=True)

    def _webhook_tls(self) -> ssl.SSLContext:
        """How https webhooks are checked: the system's CAs, `webhook_cafile`, and the certificate
        uploaded with setWebhook. The host name must match, as with Telegram."""
        context = ssl.create_default_context()
        if self.webhook_cafile:
            context.load_verify_locations(cafile=self.webhook_cafile)
        uploaded = self.webhook["certificate"] if self.webhook else None
        if uploaded:
            context.load_verify_locations(cadata=uploaded.decode("ascii", "replace"))
        return context

    async def _deliver_webhook(self, session: aiohttp.ClientSession, update: JSONDict) -> None:
        """POST one update, retrying failures; it is dropped after the last attempt."""
        webhook = self.webhook
        if webhook is None:
            return
        headers = {}
        if webhook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = webhook["secret_token"]
        for attempt in range(self.webhook_retries + 1):
            if attempt:
                await asyncio.sleep(self.webhook_retry_delay * attempt)
            try:
                async with session.post(webhook["url"], json=update, headers=headers) as response:
                    await response.read()
                    status, reason = response.status, response.reason or ""
            except aiohttp.ClientSSLError as exc:  # Telegram's wording for a bad certificate
                status, reason = 0, f"SSL error {{{getattr(exc, 'certificate_error', exc)}}}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                status, reason = 0, f"Connection failed: {type(exc).__name__}"
            self.webhook_deliveries.append(status)
            self._notify()
            if 200 <= status < 300:
                return
            message = f"Wrong response from the webhook: {status} {reason}" if status else reason
            self._webhook_error = (int(time.time()), message)

    # ------------------------------------------------------------------ message helpers

    def _resolve_chat_id(self, value: Any) -> int:
        if value is None or value == "":
            raise _bad("chat_id is empty")
        if isinstance(value, bool):
            raise _bad("chat not found")
        if isinstance(value, int):
            return self._not_migrated(value)
        text = str(value)
        if text.startswith("@"):
            name = text[1:].lower()
            if name not in self._usernames:
                chat_id = -1001000000000 - len(self._usernames)
                self._usernames[name] = chat_id
                self._chats[chat_id] = {
                    "id": chat_id,
                    "type": "channel",
                    "title": text[1:],
                    "username": text[1:],
                }
            return self._usernames[name]
        try:
            return self._not_migrated(int(text))
        except ValueError:
            raise _bad("chat not found") from None

    def _not_migrated(self, chat_id: int) -> int:
        """`chat_id`, unless the group was upgraded: then Telegram's 400 naming the new id."""
        new_id = self._migrated.get(chat_id)
        if new_id is not None:
            raise _ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": new_id},
            )
        return chat_id

    def _message_key(self, params: JSONDict) -> tuple[int, int]:
        chat_id = self._resolve_chat_id(params.get("chat_id"))
        message_id = params.get("message_id")
        if message_id is None:
            raise _bad("message identifier is not specified")
        return chat_id, int(message_id)

    def _render(
        self,
        text: str,
        parse_mode: Any,
        entities: Any,
        *,
        limit: int,
        caption: bool,
        allow_empty: bool = False,
    ) -> tuple[str, list[JSONDict]]:
        """Validate a text/caption like Telegram; return (plain text, entities)."""
        if entities is not None:
            plain = text
            ents = self._validate_entities(text, entities)
        elif parse_mode in ("MarkdownV2", "HTML"):
            try:
                plain, ents = (_parse_html if parse_mode == "HTML" else _parse_markdown_v2)(text)
            except _ParseError as exc:
                raise _bad(f"can't parse entities: {exc}") from None
        elif parse_mode in (None, "", "Markdown"):
            plain, ents = text, []
        else:
            raise _bad(f"unsupported parse_mode {parse_mode}")
        if len(ents) > MAX_ENTITIES:  # kept in text order, the rest silently dropped
            ents = sorted(ents, key=lambda e: (e["offset"], -e["length"]))[:MAX_ENTITIES]
        if not caption and not allow_empty and not plain.strip():
            raise _bad("message text is empty")
        if utf16_len(plain) > limit:
            raise _bad("message caption is too long" if caption else "message is too long")
        return plain, ents

    @staticmethod
    def _validate_entities(text: str, entities: Any) -> list[JSONDict]:
        if not isinstance(entities, list):
            raise _bad("can't parse entities: entities must be an array")
        size = utf16_len(text)
        for number, entity in enumerate(entities):
            if not isinstance(entity, dict) or not isinstance(entity.get("type"), str):
                raise _bad(f"can't parse entities: entity #{number} has no type")
            offset, length = entity.get("offset"), entity.get("length")
            if (
                not isinstance(offset, int)
                or not isinstance(length, int)
                or offset < 0
                or length <= 0
                or offset + length > size
            ):
                raise _bad(
                    f"can't parse entities: entity #{number} ({entity['type']}) at offset "
                    f"{offset} with length {length} is outside the text (UTF-16 length {size})"
                )
            if entity["type"] not in ENTITY_TYPES:
                raise _bad(
                    f"can't parse entities: unsupported type {entity['type']!r} of entity #{number}"
                )
            if entity["type"] == "text_link" and not entity.get("url"):
                raise _bad(f"can't parse entities: text_link entity #{number} has no URL")
        return list(entities)

    def _reply_target(self, chat_id: int, params: JSONDict) -> int | None:
        reply = params.get("reply_parameters")
        allow_missing = bool(params.get("allow_sending_without_reply"))
        message_id = params.get("reply_to_message_id")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow_missing = bool(reply.get("allow_sending_without_reply"))
            if reply.get("chat_id") not in (None, chat_id):
                return None  # a reply into another chat: not tracked
        if message_id is None:
            return None
        if self._lookup_message(chat_id, int(message_id)) is None:
            if allow_missing:
                return None
            raise _bad("message to be replied not found")
        return int(message_id)

    def _thread(self, chat_id: int, params: JSONDict, reply_to: int | None) -> int | None:
        """The topic a bot message goes to: ``message_thread_id``, else the replied message's."""
        thread_id = params.get("message_thread_id")
        if thread_id is not None:
            if not isinstance(thread_id, int) or thread_id not in self._topics.get(chat_id, {}):
                raise _bad("message thread not found")
            return thread_id
        if reply_to is not None:
            target = self._bot_msgs.get((chat_id, reply_to))
            if target is not None:
                return target.thread_id
            replied = self._user_msgs.get((chat_id, reply_to)) or {}
            if replied.get("is_topic_message"):
                return int(replied["message_thread_id"])
        return None

    def _record(
        self,
        chat_id: int,
        kind: str,
        params: JSONDict,
        *,
        text: str | None,
        plain: str | None,
        entities: list[JSONDict],
        parse_mode: str | None,
        content: JSONDict,
        reply_to: int | None,
        data: bytes | None = None,
        media_ref: str | None = None,
        thread_id: int | None = None,
    ) -> BotMessage:
        """Create the BotMessage and the Message object returned to the bot."""
        message_id = self._new_message_id(chat_id)
        markup = (
            params.get("reply_markup") if isinstance(params.get("reply_markup"), dict) else None
        )
        raw: JSONDict = {
            "message_id": message_id,
            "from": self.bot_user,
            "date": int(time.time()),
            "chat": self._chat(chat_id),
            **content,
        }
        if thread_id is not None:
            raw["message_thread_id"] = thread_id
            raw["is_topic_message"] = True
        reply = self._reply_copy(chat_id, reply_to)
        if reply is not None:
            raw["reply_to_message"] = reply
        _apply_markup(raw, markup)
        now = time.monotonic()
        message = BotMessage(
            message_id=message_id,
            chat_id=chat_id,
            kind=kind,
            text=text,
            entities=entities,
            parse_mode=parse_mode,
            data=data,
            media_ref=media_ref,
            reply_markup=markup,
            reply_to_message_id=reply_to,
            plain=plain,
            raw=raw,
            thread_id=thread_id,
            history=[(now, plain)],
        )
        self.messages.setdefault(chat_id, []).append(message)
        self._bot_msgs[(chat_id, message_id)] = message
        # A message from the bot in a chat and topic replaces the draft shown there.
        self._draft_cleared[(chat_id, thread_id)] = now
        return message

    # ------------------------------------------------------------------ method handlers

    async def _accept(self, call: ApiCall) -> Any:
        return True

    async def _get_me(self, call: ApiCall) -> Any:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
            "has_topics_enabled": self.has_topics_enabled,
            "allows_users_to_create_topics": self.has_topics_enabled,
        }

    async def _get_chat(self, call: ApiCall) -> Any:
        chat = self._chat(self._resolve_chat_id(call.params.get("chat_id")))
        gifts = dict.fromkeys(
            (
                "unlimited_gifts",
                "limited_gifts",
                "unique_gifts",
                "premium_subscription",
                "gifts_from_channels",
            ),
            False,
        )
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": gifts,
        }

    async def _send_message(self, call: ApiCall) -> Any:
        p = call.params
        chat_id = self._resolve_chat_id(p.get("chat_id"))
        text = p.get("text")
        text = "" if text is None else str(text)
        parse_mode = p.get("parse_mode")
        plain, entities = self._render(
            text, parse_mode, p.get("entities"), limit=MAX_TEXT, caption=False
        )
        reply_to = self._reply_target(chat_id, p)
        thread_id = self._thread(chat_id, p, reply_to)
        content: JSONDict = {"text": plain}
        if entities:
            content["entities"] = entities
        message = self._record(
            chat_id,
            "text",
            p,
            text=text,
            plain=plain,
            entities=entities,
            parse_mode=parse_mode,
            content=content,
            reply_to=reply_to,
            thread_id=thread_id,
        )
        return message.raw

    def _media_input(self, call: ApiCall, name: str, value: Any) -> tuple[Any, str | None]:
        """Resolve a media field to (bytes or _StoredFile, reference string)."""
        if isinstance(value, str) and value.startswith("attach://"):
            part = value.removeprefix("attach://")
            if part not in call.files:
                raise _bad(f"wrong file identifier/HTTP URL specified (no part {part!r})")
            return call.files[part], None
        if value is None:
            if name not in call.files:
                raise _bad(f"there is no {name} in the request")
            return call.files[name], None
        ref = str(value)
        if ref.startswith(("http://", "https://")):
            return b"", ref
        stored = self._files.get(ref)
        if stored is None:
            raise _bad("wrong file identifier/HTTP URL specified")
        return stored, ref

    def _make_media(
        self, call: ApiCall, kind: str, field_name: str, value: Any, meta: JSONDict
    ) -> tuple[Any, bytes | None, str | None]:
        """Build the media object for ``kind``: (object, uploaded bytes, media_ref)."""
        source, ref = self._media_input(call, field_name, value)
        if isinstance(source, _StoredFile):
            return self._media_object(kind, source, meta), None, ref
        if ref is None and not source:
            raise _bad("file must be non-empty")
        part = value.removeprefix("attach://") if isinstance(value, str) else field_name
        filename, mime = call.file_info.get(part, (None, None))
        suffix = ""
        if filename and "." in filename:
            suffix = "." + filename.rsplit(".", 1)[1]
        stored = self._store(source, kind, suffix)
        meta = {"file_name": filename, "mime_type": mime if kind == "document" else None, **meta}
        return self._media_object(kind, stored, meta), (source if ref is None else None), ref

    def _record_media(
        self,
        call: ApiCall,
        chat_id: int,
        kind: str,
        field: str,
        item: JSONDict,
        meta: JSONDict,
        reply_to: int | None,
        params: JSONDict,
        extra: JSONDict | None = None,
        thread_id: int | None = None,
    ) -> BotMessage:
        """Render the caption, store the media and record one media message."""
        caption = item.get("caption")
        caption = None if caption is None else str(caption)
        plain: str | None = None
        entities: list[JSONDict] = []
        if caption is not None:
            plain, entities = self._render(
                caption,
                item.get("parse_mode"),
                item.get("caption_entities"),
                limit=MAX_CAPTION,
                caption=True,
            )
        obj, data, ref = self._make_media(call, kind, field, item.get(field), meta)
        content: JSONDict = {kind: obj, **(extra or {})}
        if plain:
            content["caption"] = plain
            if entities:
                content["caption_entities"] = entities
        return self._record(
            chat_id,
            kind,
            params,
            text=caption,
            plain=plain,
            entities=entities,
            parse_mode=item.get("parse_mode"),
            content=content,
            reply_to=reply_to,
            data=data,
            media_ref=ref,
            thread_id=thread_id,
        )

    async def _send_media(self, call: ApiCall) -> Any:
        p = call.params
        kind = _MEDIA_METHODS[call.method.lower()]
        chat_id = self._resolve_chat_id(p.get("chat_id"))
        reply_to = self._reply_target(chat_id, p)
        meta = {
            k: p[k]
            for k in ("duration", "width", "height", "length", "title", "performer", "file_name")
            if p.get(k)
        }
        thread_id = self._thread(chat_id, p, reply_to)
        return self._record_media(
            call, chat_id, kind, kind, p, meta, reply_to, p, thread_id=thread_id
        ).raw

    async def _send_media_group(self, call: ApiCall) -> Any:
        p = call.params
        chat_id = self._resolve_chat_id(p.get("chat_id"))
        media = p.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _bad("media must include 2-10 items")
        reply_to = self._reply_target(chat_id, p)
        thread_id = self._thread(chat_id, p, reply_to)
        group = {"media_group_id": str(next(self._file_counter))}
        return [
            self._record_media(
                call,
                chat_id,
                item.get("type", "photo"),
                "media",
                item,
                dict(item),
                reply_to,
                {},
                group,
                thread_id=thread_id,
            ).raw
            for item in media
        ]

    def _editable(self, params: JSONDict) -> BotMessage | None:
        """The BotMessage to edit, or None for inline messages (not tracked)."""
        if params.get("inline_message_id"):
            return None
        key = self._message_key(params)
        message = self._bot_msgs.get(key)
        if message is None or message.deleted:
            if key in self._user_msgs:
                raise _bad("message can't be edited")
            raise _bad("message to edit not found")
        return message

    def _apply_edit(
        self,
        message: BotMessage,
        params: JSONDict,
        *,
        text: str | None,
        plain: str | None,
        entities: list[JSONDict] | None,
        field_names: tuple[str, str],
    ) -> Any:
        markup = (
            params.get("reply_markup") if isinstance(params.get("reply_markup"), dict) else None
        )
        new_plain = message.plain if plain is None else plain
        new_entities = message.entities if entities is None else entities
        if (new_plain, new_entities, markup) == (
            message.plain,
            message.entities,
            message.reply_markup,
        ):
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        raw = dict(message.raw)
        if text is not None:
            message.text, message.plain, message.entities = text, plain, new_entities
            message.parse_mode = params.get("parse_mode")
            message.edits.append(text)
            message.history.append((time.monotonic(), plain))
            text_key, entities_key = field_names
            raw[text_key] = plain
            raw.pop(entities_key, None)
            if new_entities:
                raw[entities_key] = new_entities
        message.reply_markup = markup
        _apply_markup(raw, markup)
        raw["edit_date"] = int(time.time())
        message.raw = raw
        return raw

    async def _edit_text(self, call: ApiCall) -> Any:
        p = call.params
        message = self._editable(p)
        text = "" if p.get("text") is None else str(p["text"])
        plain, entities = self._render(
            text, p.get("parse_mode"), p.get("entities"), limit=MAX_TEXT, caption=False
        )
        if message is None:
            return True
        if message.kind != "text":
            raise _bad("there is no text in the message to edit")
        return self._apply_edit(
            message, p, text=text, plain=plain, entities=entities, field_names=("text", "entities")
        )

    async def _edit_caption(self, call: ApiCall) -> Any:
        p = call.params
        message = self._editable(p)
        caption = "" if p.get("caption") is None else str(p["caption"])
        plain, entities = self._render(
            caption, p.get("parse_mode"), p.get("caption_entities"), limit=MAX_CAPTION, caption=True
        )
        if message is None:
            return True
        if message.kind == "text":
            raise _bad("there is no caption in the message to edit")
        return self._apply_edit(
            message,
            p,
            text=caption,
            plain=plain,
            entities=entities,
            field_names=("caption", "caption_entities"),
        )

    async def _edit_reply_markup(self, call: ApiCall) -> Any:
        message = self._editable(call.params)
        if message is None:
            return True
        return self._apply_edit(
            message,
            call.params,
            text=None,
            plain=None,
            entities=None,
            field_names=("text", "entities"),
        )

    async def _delete_message(self, call: ApiCall) -> Any:
        key = self._message_key(call.params)
        message = self._bot_msgs.get(key)
        if message is not None and not message.deleted:
            message.deleted = True
            return True
        if self._user_msgs.pop(key, None) is not None:
            return True
        raise _bad("message to delete not found")

    async def _send_chat_action(self, call: ApiCall) -> Any:
        chat_id = self._resolve_chat_id(call.params.get("chat_id"))
        action = call.params.get("action")
        if not action:
            raise _bad("action is empty")
        self._thread(chat_id, call.params, None)
        self.chat_actions.append((chat_id, str(action)))
        return True

    async def _send_message_draft(self, call: ApiCall) -> Any:
        """Show a draft: private chats only, a non-zero draft_id, 0-4096 characters of text."""
        p = call.params
        chat_id = self._resolve_chat_id(p.get("chat_id"))
        if self._chat(chat_id)["type"] != "private":
            raise _bad("TEXTDRAFT_PEER_INVALID")
        draft_id = p.get("draft_id")
        if not isinstance(draft_id, int) or isinstance(draft_id, bool) or draft_id == 0:
            raise _bad("draft_id must be a non-zero integer")
        text = "" if p.get("text") is None else str(p["text"])
        plain, entities = "", list[JSONDict]()
        if text:  # empty: Telegram shows "Thinking..." (Bot API 10.0)
            plain, entities = self._render(
                text,
                p.get("parse_mode"),
                p.get("entities"),
                limit=MAX_TEXT,
                caption=False,
                allow_empty=True,
            )
        thread_id = self._thread(chat_id, p, None)
        self.draft_snapshots.append(
            DraftSnapshot(time.monotonic(), chat_id, draft_id, text, plain, entities, thread_id)
        )
        return True

    async def _create_forum_topic(self, call: ApiCall) -> Any:
        p = call.params
        chat_id = self._resolve_chat_id(p.get("chat_id"))
        chat = self._chat(chat_id)
        if chat["type"] == "private" and not self.has_topics_enabled:
            raise _bad("BOT_FORUM_CREATE_FORBIDDEN")
        if chat["type"] != "private" and not chat.get("is_forum"):
            raise _bad("the chat is not a forum")
        name = str(p.get("name") or "")
        if not 1 <= len(name) <= 128:
            raise _bad("TOPIC_TITLE_EMPTY" if not name else "TOPIC_TITLE_TOO_LONG")
        thread_id = self._new_message_id(chat_id)  # the id of the "topic created" message
        self.make_forum(chat_id, topics={thread_id: name})
        return {
            "message_thread_id": thread_id,
            "name": name,
            "icon_color": int(p.get("icon_color") or 0x6FB9F0),
        }

    async def _delete_forum_topic(self, call: ApiCall) -> Any:
        chat_id = self._resolve_chat_id(call.params.get("chat_id"))
        thread_id = call.params.get("message_thread_id")
        if (
            not isinstance(thread_id, int)
            or self._topics.get(chat_id, {}).pop(thread_id, None) is None
        ):
            raise _bad("message thread not found")
        return True

    async def _get_file(self, call: ApiCall) -> Any:
        stored = self._files.get(str(call.params.get("file_id") or ""))
        if stored is None:
            raise _bad("invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD:
            raise _bad("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }

    @staticmethod
    def _scope_key(params: JSONDict) -> tuple[str, str | None]:
        scope = params.get("scope")
        if not isinstance(scope, dict):
            scope = {}
        kind = str(scope.get("type") or "default")
        if "chat_id" in scope:
            kind += f":{scope['chat_id']}"
        if "user_id" in scope:
            kind += f":{scope['user_id']}"
        return kind, params.get("language_code") or None

    async def _set_my_commands(self, call: ApiCall) -> Any:
        commands = call.params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("commands must be an array of at most 100 BotCommand")
        for command in commands:
            name, description = command.get("command", ""), command.get("description", "")
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(name)):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(description)) <= 256:
                raise _bad(
                    "command description is empty"
                    if not description
                    else "BOT_COMMAND_DESCRIPTION_INVALID"
                )
        key = self._scope_key(call.params)
        if commands:
            self.commands[key] = [
                {"command": c["command"], "description": c["description"]} for c in commands
            ]
        else:
            self.commands.pop(key, None)
        return True

    async def _get_my_commands(self, call: ApiCall) -> Any:
        return self.commands.get(self._scope_key(call.params), [])

    async def _delete_my_commands(self, call: ApiCall) -> Any:
        self.commands.pop(self._scope_key(call.params), None)
        return True

    async def _answer_callback_query(self, call: ApiCall) -> Any:
        query_id = str(call.params.get("callback_query_id") or "")
        if query_id not in self._open_callbacks:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        self._open_callbacks.discard(query_id)
        self.callback_answers.append(dict(call.params))
        return True

    async def _set_description(self, call: ApiCall) -> Any:
        kind = "short_description" if "short" in call.method.lower() else "description"
        text = str(call.params.get(kind) or "")
        limit = 120 if kind == "short_description" else 512
        if len(text) > limit:
            raise _bad(f"{kind.replace('_', ' ')} is too long")
        self.descriptions[(kind, call.params.get("language_code") or None)] = text
        return True

    async def _get_description(self, call: ApiCall) -> Any:
        kind = "short_description" if "short" in call.method.lower() else "description"
        return {kind: self.descriptions.get((kind, call.params.get("language_code") or None), "")}


# --------------------------------------------------------------------------- module helpers


def _apply_markup(raw: JSONDict, markup: JSONDict | None) -> None:
    # Telegram only echoes inline keyboards back in Message.reply_markup.
    if markup is not None and "inline_keyboard" in markup:
        raw["reply_markup"] = markup
    else:
        raw.pop("reply_markup", None)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Error {status}"


def _short(params: JSONDict) -> str:
    text = json.dumps(params, ensure_ascii=False, default=str)
    return text if len(text) <= 160 else text[:157] + "..."


def _json_response(status: int, body: Any) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json"
    )


async def _read_params(
    request: web.Request,
) -> tuple[JSONDict, dict[str, bytes], dict[str, tuple[str | None, str | None]]]:
    """Decode query string + urlencoded / multipart / JSON body into typed params and files."""
    params: JSONDict = {k: _decode_field(k, v) for k, v in request.query.items()}
    files: dict[str, bytes] = {}
    info: dict[str, tuple[str | None, str | None]] = {}
    if not request.body_exists:
        return params, files, info
    content_type = request.content_type
    if content_type == "application/json":
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            raise ValueError("can't parse JSON request body") from None
        if not isinstance(body, dict):
            raise ValueError("JSON request body must be an object")
        params.update(body)
    elif content_type == "multipart/form-data":
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                continue
            if part.filename is not None:
                files[part.name] = bytes(await part.read(decode=True))
                info[part.name] = (part.filename, part.headers.get("Content-Type"))
            else:
                params[part.name] = _decode_field(part.name, await part.text())
    else:
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, str):
                params[key] = _decode_field(key, value)
    return params, files, info


def main(argv: list[str] | None = None) -> None:
    """Serve a FakeTelegram until Ctrl-C, for benchmarks (``python -m`` this module)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument("--token", default="123456:TEST-TOKEN")
    parser.add_argument("--bot-username", default="botcore_test_bot")
    parser.add_argument(
        "--limits",
        choices=("off", "telegram"),
        default="off",
        help="enforce Telegram's flood limits (default: off)",
    )
    args = parser.parse_args(argv)

    async def serve() -> None:
        limits = TELEGRAM_LIMITS if args.limits == "telegram" else NO_LIMITS
        fake = FakeTelegram(args.token, bot_username=args.bot_username, limits=limits)
        await fake.start(args.host, args.port)
        print(f"fake Telegram serving on {fake.url} (base_url {fake.base_url})", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await fake.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
