"""One incoming message on its way through the pipeline, with the helpers a plugin needs to answer it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from telegram import Message
from telegram.error import BadRequest

from botcore.plugins import maybe_await
from botcore.types import MessageKind, Reply, Text, UserError

if TYPE_CHECKING:
    from botcore.app import App
    from botcore.buttons import Pressed
    from botcore.runtime import Runtime

log = logging.getLogger(__name__)

TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
"""The cloud Bot API refuses getFile above 20 MB; a local Bot API server (bot.base_url) does not."""

CHAT_ACTION_EVERY = 4.5
"""Telegram shows a chat action for 5 seconds; renew it a little before it fades."""
CHAT_ACTION_GRACE = 0.2
"""Work that finishes sooner shows no action: no flicker for the user, one request fewer."""


def topic_of(message: Message) -> int | None:
    """The topic of a message, or None. Only `is_topic_message` marks one: in a supergroup
    without topics (and in General) a reply carries a `message_thread_id` too, the root of its
    reply thread, which is no topic and to which Telegram refuses to send."""
    return message.message_thread_id if message.is_topic_message else None


class Outcome(StrEnum):
    """How a turn ended, as the log line and the `updates` metric say."""

    ANSWERED = "answered"
    ERROR = "error"
    """A plugin raised: the user got the friendly error (or its answer broke off)."""
    USER_ERROR = "user_error"
    """A UserError's message was shown."""
    MODEL_ERROR = "model_error"
    """The model's API failed (botcore.explain_api_error)."""
    BLOCKED = "blocked"
    """The user blocked the bot or left the chat: the reply was dropped."""
    UNDELIVERED = "undelivered"
    """Telegram refused the reply or flood control outlasted bot.limits.max_wait."""
    IGNORED = "ignored"
    EDITED = "edited"
    """An edit of a message: the user was told only new messages count."""
    UNKNOWN_COMMAND = "unknown_command"
    UNSUPPORTED = "unsupported"


@dataclass(eq=False)
class _Action:
    """One `chat_action` block: its action, and the timer or task that keeps it shown."""

    action: str
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            task, self.task = self.task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass
class Record:
    """botcore's notes on one turn, written by the pipeline, the guard and delivery, read when
    it ends (the log line, the metrics, the fallback answers). Not plugin API."""

    replied_by: str | None = None
    """The plugin whose reply ends the turn (named in the log if delivering it fails)."""
    unavailable: set[str] = field(default_factory=set)
    """Plugins skipped for this turn because they are switched off or cooling down."""
    said: bool = False
    """Set once something was sent with `turn.send()`: the turn is then not left unanswered."""
    errors: list[str] = field(default_factory=list)
    """The plugins that raised while handling this turn, in order (logged and counted)."""
    noted: Outcome | None = None
    """What the reply alone cannot tell; see `note`."""
    pressed: Pressed | None = None
    """The button press this turn answers (kind "button"; botcore.buttons)."""
    replies: int = 0
    """Replies other than streams delivered so far: a stream being shown when one is sent goes
    on in a new message below it (botcore.delivery)."""
    actions: list[_Action] = field(default_factory=list)
    """The chat actions ("typing…") the turn shows now, paused while it waits for the user."""

    @property
    def failed(self) -> bool:
        """A plugin raised during this turn: a user left without an answer gets the friendly error."""
        return bool(self.errors)

    def note(self, outcome: Outcome) -> None:
        """Note how the turn ended where the reply alone cannot tell. A later note wins (an
        answer that could not be delivered is undelivered, whatever it said), except that a
        UserError's message never hides the failure it explains (a model error)."""
        if outcome is not Outcome.USER_ERROR or self.noted is None:
            self.noted = outcome

    def outcome(self, reply: Reply | None, kind: str) -> Outcome:
        """How the turn ended, worked out once, when it ends: the noted outcome, else from the
        reply and who made it (`kind`: the message's kind as received)."""
        if self.noted is not None:
            return self.noted
        if self.failed and (
            reply is None or self.replied_by is None or self.replied_by in self.errors
        ):
            return Outcome.ERROR
        if reply is None:
            return Outcome.ANSWERED if self.said else Outcome.IGNORED
        if self.replied_by is None:  # the core's own answer: nobody takes this message
            return Outcome.UNKNOWN_COMMAND if kind == "command" else Outcome.UNSUPPORTED
        return Outcome.ANSWERED


def sender_of(message: Message) -> int | None:
    """Who speaks in a message: the chat it is sent on behalf of (a channel posting in a group;
    the group itself for an anonymous admin), else the user. For those, `from` is a placeholder
    Telegram gives every channel (Channel_Bot) or every anonymous admin (GroupAnonymousBot)."""
    if message.sender_chat is not None:
        return message.sender_chat.id
    return message.from_user.id if message.from_user else None


@dataclass
class Turn:
    """An incoming message: who sent it, what it says, and how to answer.

    pre_message hooks may rewrite `text` and `kind` (voice turns into text); handlers read them.
    """

    runtime: Runtime = field(repr=False)
    """botcore's own machinery (not plugin API): plugins use `app`."""
    update_id: int
    message: Message
    kind: MessageKind
    text: str | None
    language: str
    command: str | None = None
    """The command name without slash or @botname, for kind == "command"."""
    args: str = ""
    """What follows the command, stripped."""
    ignored: bool = False
    """Set by a pre_message hook to end the turn in silence: nothing routes, nothing is sent."""
    usage: dict[str, float] = field(default_factory=dict)
    """What this turn consumed, by metered item; see `meter()`."""
    prices: dict[str, float] = field(default_factory=dict)
    """This turn's own price per unit of some items (chat sets the chosen model's price per
    token), used by the usage ledger instead of its configured price for them."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Scratch space for plugins to pass notes along the pipeline (namespaced keys, please)."""
    record: Record = field(default_factory=Record, repr=False)
    """What botcore notes about the turn on its way (not plugin API)."""

    @property
    def replied_by(self) -> str | None:
        """The plugin whose reply ends the turn (a post_message hook may ask), or None."""
        return self.record.replied_by

    @property
    def app(self) -> App:
        """The running bot: settings, texts, the store, the model client (see botcore.App)."""
        return self.runtime.public

    @property
    def chat_id(self) -> int:
        """The chat the message came from (a user id in private chats)."""
        return self.message.chat_id

    @property
    def topic_id(self) -> int | None:
        """The forum topic the message was sent in (a forum supergroup, or a private chat with
        topics); None in General and in chats without topics. See `topic_of`."""
        return topic_of(self.message)

    @property
    def user_id(self) -> int | None:
        """The user in the message's `from`; for a message sent on behalf of a chat, Telegram's
        placeholder shared by all such senders: tell senders apart with `sender_id`."""
        return self.message.from_user.id if self.message.from_user else None

    @property
    def sender_id(self) -> int | None:
        """Who speaks, for access, conversations and /cancel: the user, or the chat a message is
        sent on behalf of (a channel's id; the group's own for an anonymous admin). See
        `sender_of`."""
        return sender_of(self.message)

    @property
    def chat_type(self) -> str:
        """ "private", "group", "supergroup" or "channel"."""
        return self.message.chat.type

    @property
    def is_private(self) -> bool:
        """True in a one-to-one chat with the bot."""
        return self.chat_type == "private"

    @property
    def addressed(self) -> bool:
        """True when the message is meant for the bot: a private chat, a command, a mention, a reply."""
        if self.is_private or self.kind in ("command", "button"):
            return True
        reply = self.message.reply_to_message
        # In a topic, Telegram makes every message a reply to the topic's first ("topic created")
        # message: in a topic the bot opened, that is no reply to the bot.
        if (
            reply
            and reply.from_user
            and reply.from_user.id == self.runtime.bot_id
            and reply.forum_topic_created is None
        ):
            return True
        username = self.runtime.bot_username
        if not username:
            return False
        mention = "@" + username.lower()
        entities = self.message.parse_entities(["mention"]) or self.message.parse_caption_entities(
            ["mention"]
        )
        return any(value.lower() == mention for value in entities.values())

    @property
    def is_admin(self) -> bool:
        """True when the sender is one of `bot.admins`."""
        return self.user_id is not None and self.user_id in self.runtime.config.bot.admins

    async def reserve(self, items: Mapping[str, float]) -> None:
        """Reserve the estimated use of an expensive call before making it, e.g.
        `await turn.reserve({"image.images": 1})`: a UserError saying when the budget resets if
        it would pass one. Settled against what `meter()` records when the turn ends; a no-op
        when no plugin keeps budgets."""
        for impl in self.runtime.plugins.impls("reserve_usage"):
            await maybe_await(impl(turn=self, items=items))

    def meter(self, item: str, amount: float) -> None:
        """Record metered use, e.g. ("chat.input_tokens", 812), ("image.images", 1),
        ("voice.seconds", 14.2): the usage ledger prices it, logs and metrics count it."""
        self.usage[item] = self.usage.get(item, 0.0) + amount

    def t(self, key: str, **values: Any) -> str:
        """A user-facing text in this user's language (see botcore.i18n)."""
        return self.runtime.t(key, self.language, **values)

    async def send(self, reply: Reply | str) -> None:
        """Send a reply now, before the turn ends (a transcript before the answer, a progress note)."""
        self.record.said = True
        if isinstance(reply, str):
            reply = Text(reply)
        elif isinstance(reply, Text) and reply.buttons and reply.plugin is None:
            from botcore.guard import CURRENT  # the guard imports this module

            reply = dataclasses.replace(reply, plugin=CURRENT.get())
        await self.runtime.delivery.deliver(self, reply)

    @contextlib.asynccontextmanager
    async def chat_action(self, action: str = "typing") -> AsyncIterator[None]:
        """Show "typing…" (or "upload_photo", "record_voice"…) while the block runs, from 0.2 s on."""
        shown = _Action(action)
        # A timer, not a task, until the grace is over: most turns end sooner.
        shown.timer = asyncio.get_running_loop().call_later(
            CHAT_ACTION_GRACE, self._start_action, shown
        )
        self.record.actions.append(shown)
        try:
            yield
        finally:
            self.record.actions.remove(shown)
            await shown.stop()

    def _start_action(self, shown: _Action) -> None:
        shown.task = asyncio.get_running_loop().create_task(self._keep_action(shown.action))

    @contextlib.asynccontextmanager
    async def waiting_for_user(self) -> AsyncIterator[None]:
        """No "typing…" while the block waits for the user (a tool call's approval): the bot is
        not writing then. Not plugin API."""
        paused = list(self.record.actions)
        for shown in paused:
            await shown.stop()
        try:
            yield
        finally:
            for shown in paused:
                if shown in self.record.actions:  # its block still runs: show it again
                    self._start_action(shown)

    async def _keep_action(self, action: str) -> None:
        while True:
            with contextlib.suppress(Exception):  # a lost "typing" must never fail the turn
                await self.runtime.telegram.send_chat_action(
                    self.chat_id, action, message_thread_id=self.topic_id
                )
            await asyncio.sleep(CHAT_ACTION_EVERY)

    async def download(self, file_id: str, *, size: int | None = None) -> bytes:
        """Download a file the user sent; too large for the Bot API is a UserError."""
        limit = self.runtime.download_limit
        if limit is not None and size is not None and size > limit:
            raise UserError(self.t("file_too_big", limit_mb=limit // (1024 * 1024)))
        try:
            tg_file = await self.runtime.telegram.get_file(file_id)
        except BadRequest as exc:
            if "too big" in str(exc).lower():
                raise UserError(
                    self.t("file_too_big", limit_mb=(limit or 0) // (1024 * 1024))
                ) from None
            # An expired or unknown file_id: the user can fix it by sending the file again.
            log.warning("getFile refused (update %s): %s", self.update_id, exc)
            raise UserError(self.t("file_unavailable")) from None
        return bytes(await tg_file.download_as_bytearray())
