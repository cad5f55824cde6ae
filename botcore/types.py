"""The values plugins hand to the core: commands, message handlers, replies and user-facing errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    from botcore.turn import Turn

MessageKind: TypeAlias = Literal[
    "text",
    "command",
    "voice",
    "audio",
    "video_note",
    "photo",
    "document",
    "sticker",
    "button",
    "payment",
    "pre_checkout",
    "other",
]
"""What an incoming message carries; pre_message hooks may change it (voice -> text). A
"payment" is a `successful_payment` (Telegram Stars); "pre_checkout" is the turn of the
`pre_checkout` hook, before a user pays."""


@dataclass(frozen=True)
class Button:
    """An inline button under a `Text` reply. A press reaches the `button_pressed(turn, data)`
    hook of the plugin that sent it, from the user it was sent to, once per keyboard (its first
    press spends it) and within a day; forged, replayed and expired presses reach no plugin."""

    text: str
    data: str = ""
    """What `button_pressed` gets (kept by botcore: Telegram sees only a random token)."""

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("a Button needs a text")
        if len(self.data) > 4096:
            raise ValueError("a Button's data is at most 4096 characters")


@dataclass(frozen=True)
class Text:
    """A text reply; the core splits it past Telegram's 4096-character limit."""

    text: str
    markdown: bool = False
    """Render Markdown (as a chat model writes it) into Telegram entities; plain text if False."""
    buttons: Sequence[Sequence[Button]] = ()
    """Rows of inline buttons under the text (under its last message, if it is split)."""
    plugin: str | None = None
    """Set by botcore to the plugin that made the reply: the owner of its buttons."""


@dataclass(frozen=True)
class Photo:
    """A picture given as bytes or as a URL Telegram can fetch."""

    photo: bytes | str
    caption: str | None = None


@dataclass(frozen=True)
class Voice:
    """A voice message: OGG/Opus bytes."""

    voice: bytes
    caption: str | None = None


@dataclass(frozen=True)
class Document:
    """A file sent as a document."""

    data: bytes
    filename: str
    caption: str | None = None


class Reasoning(str):
    """A piece of a TextStream that is the model's reasoning, not its answer: delivery shows it
    collapsed (an expandable blockquote) above the answer; it is never the answer's text (not in
    `on_show`, not read aloud, not kept in the history)."""

    __slots__ = ()


@dataclass(frozen=True)
class TextStream:
    """Text that arrives in pieces (a streaming model): shown at once, then edited as it grows."""

    chunks: AsyncIterator[str]
    markdown: bool = True
    plugin: str | None = None
    """Set by botcore to the plugin whose code made the stream: a failure while it is read is
    that plugin's, whoever reads it."""
    on_show: Callable[[str], Awaitable[None]] | None = None
    """Awaited with the whole text before delivery shows it (each preview and the final text),
    so that the plugin can keep what the user saw: a kill -9 mid-answer then loses nothing."""


@dataclass(frozen=True)
class Invoice:
    """An invoice in Telegram Stars (XTR): a message with a Pay button, or with `subscription`
    a link to a subscription renewed every 30 days (Telegram's only period) until cancelled.
    Before the user pays, the `pre_checkout` hooks judge it; the payment then comes as a turn
    of kind "payment" (`turn.message.successful_payment`, whose `invoice_payload` is `payload`)."""

    title: str
    """1-32 characters."""
    description: str
    """1-255 characters."""
    payload: str
    """What the payment will carry back, 1-128 bytes; the user never sees it."""
    stars: int
    """The price in Stars (1-10000)."""
    subscription: bool = False

    def __post_init__(self) -> None:
        if not 1 <= len(self.title) <= 32 or not 1 <= len(self.description) <= 255:
            raise ValueError("an Invoice needs a title of 1-32 and a description of 1-255 chars")
        if not 1 <= len(self.payload.encode()) <= 128:
            raise ValueError("an Invoice's payload is 1-128 bytes")
        if not 1 <= self.stars <= 10000:
            raise ValueError("an Invoice asks for 1-10000 Stars")


Reply: TypeAlias = Text | Photo | Voice | Document | TextStream | Invoice
"""Anything a plugin may answer with; the core's delivery is the only code that sends it."""

HandlerResult: TypeAlias = Reply | str | None
"""A handler returns a Reply, a plain string (shorthand for Text), or None (nothing to say)."""

HandlerFunc: TypeAlias = Callable[["Turn"], Awaitable[HandlerResult] | HandlerResult]


@dataclass(frozen=True)
class Command:
    """A slash command: `/name args`. `help` feeds /help and Telegram's command menu."""

    name: str
    handler: HandlerFunc
    help: str | Mapping[str, str] = ""
    """Help text, or a mapping of language code to help text ({"en": ..., "ru": ...})."""
    hidden: bool = False
    """Left out of /help and the command menu (debug commands)."""
    admin: bool = False
    """Only for `bot.admins`: refused to everyone else, and listed in /help for admins only."""

    def help_for(self, language: str, default_language: str = "en") -> str:
        """The help text in `language`, falling back to the default language, then any."""
        if isinstance(self.help, str):
            return self.help
        for lang in (language, default_language, "en"):
            if lang in self.help:
                return self.help[lang]
        return next(iter(self.help.values()), "")


@dataclass(frozen=True)
class Handler:
    """Answers non-command messages of the given kinds (text, voice, photo...)."""

    kinds: frozenset[str] | set[str] | tuple[str, ...]
    handler: HandlerFunc
    name: str = ""


class UserError(Exception):
    """Raise it to show the user `message` instead of the generic error; it is not logged as a bug."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class PluginInfo:
    """What `botcore plugins` shows about one loaded plugin."""

    name: str
    module: Any
    version: str
    source: str
    hooks: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)


def as_reply(result: object) -> Reply | None:
    """Normalise what a handler returned: a string becomes Text; anything else is a plugin bug."""
    if isinstance(result, str):
        return Text(result) if result else None
    if result is None or isinstance(result, Text | Photo | Voice | Document | TextStream | Invoice):
        return result
    raise TypeError(
        "expected a reply (Text, Photo, Voice, Document, TextStream, Invoice or str), "
        f"got {result!r:.80}"
    )
