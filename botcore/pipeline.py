"""One message through the plugins: pre_message, then a command or a handler, then post_message.

Every plugin call goes through `Pipeline.call`, which awaits sync or async hooks alike and isolates
the plugin: an exception is logged with the plugin's name and the update id, and the turn goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from telegram import (
    CallbackQuery,
    Chat,
    MaybeInaccessibleMessage,
    Message,
    MessageEntity,
    PreCheckoutQuery,
    Update,
)
from telegram.error import TelegramError

from botcore.buttons import Pressed
from botcore.gate import PRESS as GATE_PRESS
from botcore.journal import Journal
from botcore.observe import record_turn
from botcore.plugins import CORE
from botcore.turn import Outcome, Turn, sender_of, topic_of
from botcore.types import MessageKind, Reply, Text, TextStream

if TYPE_CHECKING:
    from botcore.runtime import Runtime

log = logging.getLogger(__name__)

CHAT_LEASE = 30.0
"""Seconds a chat stays locked in a shared store after its instance died mid-turn (a live one
renews the lease for as long as the turn takes)."""
REMOTE_CANCEL_WAIT = 1.0
"""Seconds a /cancel waits to hear that another instance (sharing the store) stopped the chat's
turn, before it takes the usual way ("nothing to cancel")."""
CANCEL_SETTLE = 2.0
"""Seconds a /cancel waits for the stopped answer to leave its last text before saying so."""

Place = tuple[int, int | None]
"""Where turns queue and /cancel acts: a chat, and the forum topic within it (None: General, or a
chat without topics). Topics are separate conversations, so one forum's topics run at once."""

_MEDIA_KINDS: tuple[MessageKind, ...] = (
    "voice",
    "audio",
    "video_note",
    "photo",
    "document",
    "sticker",
)


class Pipeline:
    """Turns updates into turns and turns into replies, one chat at a time and many chats at once."""

    def __init__(self, app: Runtime) -> None:
        self.app = app
        self.guard = app.guard
        self._slots = asyncio.Semaphore(app.config.bot.concurrency)
        self._chats: dict[Place, _ChatLock] = {}
        self._asked: dict[str, asyncio.Future[str]] = {}
        """Cancel requests sent to other instances, by id, until one answers that it stopped the
        turn ("stopped") or that the turn is someone else's ("theirs")."""
        self._idle = asyncio.Event()
        """Set while no chat has an update under way (``_chats`` is empty)."""
        self._idle.set()
        self.journal = Journal(app.store)
        """Updates taken but not yet handled (the runner journals them; `handle` ends them)."""
        self.interrupted: set[int] = set()
        """Updates whose turn a kill cut off (from the journal): `handle` says so, in order."""

    async def wait_idle(self) -> None:
        """Return once no update is being handled or waits for its chat."""
        await self._idle.wait()

    async def start(self) -> None:
        """With a store that several bot processes share, hear their cancel requests: a /cancel
        reaches whichever instance the balancer picked, the turn runs on another."""
        if self.app.store.shared:
            await self.app.store.listen(self._on_signal)

    async def handle(self, update: object, _context: object = None) -> None:
        """The python-telegram-bot callback for every update (registered non-blocking).

        Each update gets its own task; the chat's lock (a forum topic's, in a forum) keeps its turns
        in arrival order, and it is taken before a concurrency slot, so a flood in one chat never
        starves the others. /cancel is answered at once, not queued behind the turn it stops; it
        stops only the sender's own answer (any, for a bot admin), as a new message does with
        `bot.new_message_cancels`: in a group, one member never stops another's. An edit (in a
        private chat) is a turn of its own, in order with the chat's others.
        """
        if not isinstance(update, Update):
            return
        try:
            await self._sort(update)
        finally:
            current = asyncio.current_task()
            if current is None or not current.cancelling():  # not cut off: handled
                await self.journal.done(update.update_id)

    async def _sort(self, update: Update) -> None:
        """Send an update its way: a button press, a migration, a /cancel (answered at once), or a
        message (or private edit) queued behind its chat's earlier ones, then served."""
        if update.callback_query is not None:
            await self._button(update.update_id, update.callback_query)
            return
        if update.pre_checkout_query is not None:  # answered at once: Telegram waits 10 s
            await self._pre_checkout(update.update_id, update.pre_checkout_query)
            return
        message = update.message
        edit = message is None
        if message is None:
            message = update.edited_message
            if message is None or message.chat.type != "private":
                return  # channel posts, edits in groups and anything else are not for us
        if message.migrate_to_chat_id or message.migrate_from_chat_id:  # a group upgraded
            await self.app.delivery.chat_moved(
                message.migrate_from_chat_id or message.chat_id,
                message.migrate_to_chat_id or message.chat_id,
            )
            return
        update_id = update.update_id
        place = (message.chat_id, topic_of(message))
        entry = self._chats.get(place)
        sender, admin = sender_of(message), self._admin(message)
        if not edit and self._is_cancel(message):
            running = entry.current if entry is not None else None
            busy = running is not None and not running.done()
            theirs = busy and entry is not None and not entry.owned(sender, admin)
            stopped = entry is not None and not theirs and entry.stop()
            if stopped and running is not None:
                # The stopped answer first leaves what it showed (a draft becomes a message),
                # so "Stopped." comes under it, as under an edited answer; bounded, not queued.
                await asyncio.wait({running}, timeout=CANCEL_SETTLE)
            if not stopped and not theirs and self.app.store.shared:
                found = await self._stop_elsewhere(place, update_id, sender, admin, answer=True)
                stopped, theirs = found == "stopped", found == "theirs"
            await self.cancel(update_id, message, stopped=stopped, theirs=theirs)
            return
        if not edit and self.app.config.bot.new_message_cancels:
            stopped = entry is not None and entry.owned(sender) and entry.stop()
            if not stopped and self.app.store.shared:
                self.app.in_background(self._stop_elsewhere(place, update_id, sender))
        if entry is None:
            entry = self._chats[place] = _ChatLock()
            self._idle.clear()
        entry.users += 1
        try:
            async with entry.lock, self._shared_lock(place, update_id), self._slots:
                await self.journal.started(update_id)
                # A payment cut off is handled again: the user cannot send it again, and its
                # plugin keys what it does on the charge id (see the pre_checkout hook).
                if update_id in self.interrupted and message.successful_payment is None:
                    self.interrupted.discard(update_id)
                    task = asyncio.create_task(self._tell_interrupted(update_id, message))
                else:
                    task = asyncio.create_task(self.serve(update_id, message))
                entry.current, entry.update_id, entry.sender = task, update_id, sender
                try:
                    await task
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if not task.cancelled() or (current is not None and current.cancelling()):
                        raise  # the bot is shutting down, not a user's /cancel
                finally:
                    entry.current = entry.update_id = entry.sender = None
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._chats[place]
                if not self._chats:
                    self._idle.set()

    async def _button(self, update_id: int, query: CallbackQuery) -> None:
        """A press of an inline button. The plugin that sent it answers, in a turn of the
        presser's with access control first (botcore.buttons). Any other press (forged, spent,
        expired, someone else's) is answered as such, and no code sees its data."""
        message = query.message
        found: Pressed | str = "expired"
        if message is not None:
            try:
                found = await self.app.keyboards.redeem(
                    query.data, user=query.from_user.id, chat=message.chat.id
                )
            except Exception as exc:  # the store is down: the press cannot be checked
                log.warning("store: cannot check a button press: %s", type(exc).__name__)
        if isinstance(found, str) or message is None:
            language = self.app.texts.language_for(query.from_user.language_code)
            key = "button_not_yours" if found == "not_yours" else "button_expired"
            await self._answer_press(query, self.app.t(key, language))
            return
        await self._answer_press(query, None)  # the client stops waiting at once
        await self.serve(update_id, _pressed(query, message), pressed=found)

    async def _pre_checkout(self, update_id: int, query: PreCheckoutQuery) -> None:
        """A user is about to pay: the pre_message hooks (access control), then the pre_checkout
        hooks judge; the first refusal is shown to the user, and no plugin to judge refuses."""
        message = Message(
            message_id=0,
            date=dt.datetime.now(dt.UTC),
            chat=Chat(query.from_user.id, Chat.PRIVATE),
            from_user=query.from_user,
        )
        message.set_bot(query.get_bot())
        language = self.app.texts.language_for(query.from_user.language_code)
        turn = Turn(self.app, update_id, message, "pre_checkout", None, language)
        refusal: str | None = None
        reply = await self.pre_message(turn)
        if reply is not None or turn.ignored:
            refusal = reply.text if isinstance(reply, Text) else turn.t("payment_unavailable")
        else:
            judged = False
            for impl in self.app.plugins.impls("pre_checkout"):
                judged = True
                said = await self.guard.call(
                    impl.plugin, "pre_checkout", impl, turn, turn=turn, query=query
                )
                if said is not None:  # a str or a UserError's message, as Text
                    refusal = said.text if isinstance(said, Text) else turn.t("payment_unavailable")
                    break
            if not judged or turn.record.failed or turn.record.unavailable:
                refusal = refusal or turn.t("payment_unavailable")
        log.info(
            "pre-checkout %s of user %s: %s",
            update_id,
            query.from_user.id,
            "ok" if refusal is None else "refused",
        )
        try:
            await self.app.telegram.answer_pre_checkout_query(
                query.id, ok=refusal is None, error_message=refusal
            )
        except TelegramError as exc:
            log.warning("could not answer pre-checkout %s: %s", update_id, exc)

    async def _answer_press(self, query: CallbackQuery, text: str | None) -> None:
        try:
            await self.app.telegram.answer_callback_query(query.id, text=text)
        except TelegramError as exc:
            log.info("could not answer a button press: %s", exc)

    def _shared_lock(self, place: Place, update_id: int) -> AbstractAsyncContextManager[object]:
        """With a store that several bot processes share, the chat's (topic's) lock in that store
        too: its turns never overlap across processes, and waiters go in update_id order."""
        if not self.app.store.shared:
            return contextlib.nullcontext()
        return self._store_lock(place, update_id)

    @contextlib.asynccontextmanager
    async def _store_lock(self, place: Place, update_id: int) -> AsyncIterator[None]:
        chat_id, topic = place
        name = f"chat:{chat_id}" if topic is None else f"chat:{chat_id}:topic:{topic}"
        async with contextlib.AsyncExitStack() as stack:
            try:
                lock = self.app.store.lock(name, timeout=CHAT_LEASE, order=update_id)
                await stack.enter_async_context(lock)
            except Exception as exc:  # the store is down: the turn meets it and says so
                log.warning("store: no lock for chat %s: %s", chat_id, type(exc).__name__)
            yield

    def _admin(self, message: Message) -> bool:
        """Whether a bot admin sent the message (not on behalf of a chat: then who is unknown)."""
        user = message.from_user
        return (
            message.sender_chat is None
            and user is not None
            and user.id in self.app.config.bot.admins
        )

    def _is_cancel(self, message: Message) -> bool:
        text = message.text or ""
        owner = self.app.commands.get("cancel")
        if not text.startswith("/cancel") or owner is None or owner[0] != CORE:
            return False  # a plugin that registers its own /cancel takes it over
        word = text.split(maxsplit=1)[0][1:]
        name, _, target = word.partition("@")
        username = self.app.bot_username
        return name == "cancel" and (
            not target or not username or target.lower() == username.lower()
        )

    async def cancel(
        self, update_id: int, message: Message, *, stopped: bool, theirs: bool = False
    ) -> None:
        """Answer a /cancel: the turn in progress was stopped (what it showed stays, nothing is
        lost), it is someone else's, or there was none. The pre_message hooks see it first, as
        any message: a sender refused access hears only what access control says."""
        turn = self.make_turn(update_id, message)
        if turn is None:
            return
        reply = await self.pre_message(turn)
        if reply is None and turn.ignored:
            return
        if reply is None:
            key = "cancelled" if stopped else "cancel_theirs" if theirs else "nothing_to_cancel"
            reply = Text(turn.t(key))
        await self.app.delivery.deliver(turn, reply)

    async def _tell_interrupted(self, update_id: int, message: Message) -> None:
        """A message whose turn was cut off by a kill (its preview froze, or nothing came): ask
        the user to send it again. Group chatter not meant for the bot is left alone."""
        turn = self.make_turn(update_id, message)
        if turn is not None and turn.addressed:
            await self.app.delivery.deliver(turn, Text(turn.t("interrupted")))
        log.info("update %s: its turn was cut off by a restart; the user was told", update_id)

    async def _stop_elsewhere(
        self,
        place: Place,
        update_id: int,
        sender: int | None,
        admin: bool = False,
        *,
        answer: bool = False,
    ) -> str | None:
        """Ask every instance on the shared store to stop this chat's (topic's) turn if it runs an
        earlier update of `sender`'s (anyone's, for an `admin`); with `answer`, wait a moment to
        hear whether one did: "stopped", "theirs" (one runs someone else's), or None."""
        chat_id, topic = place
        request: dict[str, Any] = {
            "kind": "cancel",
            "chat": chat_id,
            "topic": topic,
            "before": update_id,
            "sender": sender,
            "admin": admin,
        }
        heard: asyncio.Future[str] | None = None
        if answer:
            request["id"] = secrets.token_hex(8)
            heard = self._asked[request["id"]] = asyncio.get_running_loop().create_future()
        try:
            if not await self._broadcast(request) or heard is None:
                return None
            return await asyncio.wait_for(heard, REMOTE_CANCEL_WAIT)
        except TimeoutError:
            return None
        finally:
            if answer:
                del self._asked[request["id"]]

    def _on_signal(self, message: dict[str, Any]) -> None:
        """Another instance's request to stop a chat's (topic's) turn, or its answer that it did
        (or that the turn is someone else's)."""
        if message.get("kind") in ("stopped", "theirs"):
            heard = self._asked.get(str(message.get("id")))
            if heard is not None and not heard.done():
                heard.set_result(str(message["kind"]))
            return
        if message.get("kind") != "cancel":
            return
        entry = self._chats.get((message.get("chat", 0), message.get("topic")))
        before = message.get("before")
        running = entry.update_id if entry is not None else None
        if entry is None or not isinstance(before, int) or running is None or running >= before:
            return  # nothing here, or the turn of that very message (or a later one)
        sender = message.get("sender")
        if not entry.owned(
            sender if isinstance(sender, int) else None, message.get("admin") is True
        ):
            if message.get("id"):
                self.app.in_background(self._broadcast({"kind": "theirs", "id": message["id"]}))
            return
        if entry.stop() and message.get("id"):
            self.app.in_background(self._broadcast({"kind": "stopped", "id": message["id"]}))

    async def _broadcast(self, message: dict[str, Any]) -> bool:
        """Send a signal to the other instances; False (logged) when the store is down, and
        then a turn simply goes on where it runs."""
        try:
            await self.app.store.broadcast(message)
        except Exception as exc:
            log.warning("store: cannot signal the other instances: %s", type(exc).__name__)
            return False
        return True

    async def serve(
        self, update_id: int, message: Message, *, pressed: Pressed | None = None
    ) -> None:
        """One message (or an edit of one: it has an `edit_date`), start to finish: the turn, the
        plugins, the delivery, the log line."""
        started = time.perf_counter()
        turn = self.make_turn(update_id, message)
        if turn is None:
            return
        if pressed is not None:
            turn.kind, turn.record.pressed = "button", pressed
        edit = message.edit_date is not None
        kind = "edited" if edit else turn.kind
        reply: Reply | None = None
        try:
            reply = await (self._edited(turn) if edit else self.answer(turn))
            if reply is not None:
                await self.app.delivery.deliver(turn, reply)
        finally:
            for impl in self.app.plugins.impls("turn_end", disabled=True):
                await self.guard.call(impl.plugin, "turn_end", impl, turn, turn=turn)
        record_turn(turn, reply, kind=kind, started=started)

    def make_turn(self, update_id: int, message: Message) -> Turn | None:
        """Classify a message; None for commands addressed to another bot in a group."""
        language = self.app.texts.language_for(
            message.from_user.language_code if message.from_user else None
        )
        text = _clean(message.text if message.text is not None else message.caption)
        kind: MessageKind = "text" if message.text is not None else "other"
        for media in _MEDIA_KINDS:
            if getattr(message, media):
                kind = media
                break
        if message.successful_payment is not None:
            kind = "payment"
        turn = Turn(self.app, update_id, message, kind, text, language)
        entities = message.entities or ()
        if message.text and entities and entities[0].type == MessageEntity.BOT_COMMAND:
            first = entities[0]
            if first.offset == 0:
                word = message.text[1 : first.length]
                name, _, target = word.partition("@")
                if (
                    target
                    and self.app.bot_username
                    and target.lower() != self.app.bot_username.lower()
                ):
                    return None
                turn.kind = "command"
                turn.command = name.lower()
                turn.args = message.text[first.length :].strip()
        return turn

    async def _edited(self, turn: Turn) -> Reply | None:
        """An edit of a message already answered: say that only new messages count. The
        pre_message hooks see it first, as kind "other" (nothing in it is new to transcribe or
        answer): access control refuses an edit as it refuses a message, told once."""
        turn.kind = "other"
        reply = await self.pre_message(turn)
        if reply is None and not turn.ignored:
            turn.record.note(Outcome.EDITED)
            reply = Text(turn.t("edited"))
        return reply

    async def pre_message(self, turn: Turn) -> Reply | None:
        """Run the pre_message hooks in order: the reply one of them ends the turn with at once
        (access control), or None (with `turn.ignored` set: the turn ends in silence)."""
        for impl in self.app.plugins.impls("pre_message"):
            reply = await self.guard.call(impl.plugin, "pre_message", impl, turn, turn=turn)
            if reply is not None:
                turn.record.replied_by = impl.plugin
                return reply
            if turn.ignored:
                return None
        return None

    async def answer(self, turn: Turn) -> Reply | None:
        """The reply that ends this turn, or None when there is nothing to say."""
        # A payment skips them: the user has paid, and access was checked before (pre_checkout).
        reply = None if turn.kind == "payment" else await self.pre_message(turn)
        if reply is None:
            if turn.ignored:
                return None
            reply = await self.route(turn)
        if reply is not None:
            made, guarded = reply, None
            if isinstance(made, TextStream):
                # A post_message hook that reads the stream (voice speaks it) meets its
                # plugin's failure: it counts against that plugin, not the hook's.
                reply = guarded = self.guard.reading(turn, made)
            for impl in self.app.plugins.impls("post_message"):
                changed = await self.guard.call(
                    impl.plugin, "post_message", impl, turn, turn=turn, reply=reply
                )
                if changed is not None:
                    reply = changed
            if guarded is not None and reply is guarded and not guarded.chunks.started:
                reply = made  # unread and kept: delivery reads (and judges) the stream itself
        elif turn.record.failed:
            reply = Text(turn.t("error"))
        return reply

    async def _pressed(self, turn: Turn, pressed: Pressed) -> Reply | None:
        """A button press goes to the plugin that sent the button, and to it alone."""
        if pressed.plugin == CORE and pressed.data.startswith(GATE_PRESS):
            turn.record.replied_by = CORE  # an approval of a tool call (botcore.gate)
            return await self.app.gate.pressed(turn, pressed.data)
        if not self.app.plugins.enabled(pressed.plugin):
            return Text(turn.t("unavailable"))
        for impl in self.app.plugins.impls("button_pressed"):
            if impl.plugin == pressed.plugin:
                turn.record.replied_by = impl.plugin
                data = pressed.data
                return await self.guard.call(
                    impl.plugin, "button_pressed", impl, turn, turn=turn, data=data
                )
        return Text(turn.t("button_expired"))  # its plugin is gone since it was sent

    async def _unhandled_payment(self, turn: Turn) -> Reply:
        """Stars were taken and no plugin took the payment (switched off, or failing since the
        pre-checkout): nothing may be lost, so the admins get what they need to credit or refund
        it by hand, and the user hears that it is known."""
        paid = turn.message.successful_payment
        if paid is not None:
            log.error(
                "update %s: a payment (charge %s) reached no plugin; the admins are told",
                turn.update_id,
                paid.telegram_payment_charge_id,
            )
            await self.app.tell_admins(
                self.app.t(
                    "payment_unhandled_admin",
                    user=turn.sender_id,
                    amount=paid.total_amount,
                    currency=paid.currency,
                    charge=paid.telegram_payment_charge_id,
                    payload=paid.invoice_payload,
                )
            )
        return Text(turn.t("payment_unhandled"))

    async def route(self, turn: Turn) -> Reply | None:
        """Find the command or the handler that answers this turn."""
        pressed = turn.record.pressed
        if pressed is not None:
            return await self._pressed(turn, pressed)
        if turn.kind == "command" and turn.command is not None:
            found = self.app.commands.get(turn.command)
            if found is None:
                named = (turn.text or "").split(maxsplit=1)[0].partition("@")[2]
                return (  # in groups only when named: /x@ourbot, never a bare /x for others
                    Text(turn.t("unknown_command", command=turn.command))
                    if turn.is_private or named
                    else None
                )
            plugin, command = found
            if command.admin and not turn.is_admin:
                return Text(turn.t("admin_only", command=command.name))
            if not self.app.plugins.enabled(plugin):
                return Text(turn.t("plugin_off", command=command.name))
            turn.record.replied_by = plugin
            reply = await self.guard.call(plugin, f"/{command.name}", command.handler, turn, turn)
            if reply is None and plugin in turn.record.unavailable:
                return Text(turn.t("unavailable"))
            return reply
        for plugin, handler in self.app.handlers:
            if turn.kind not in handler.kinds or not self.app.plugins.enabled(plugin):
                continue
            reply = await self.guard.call(
                plugin, handler.name or "handler", handler.handler, turn, turn
            )
            if reply is not None:
                turn.record.replied_by = plugin
                return reply
        record = turn.record
        if turn.kind == "payment":
            return await self._unhandled_payment(turn)
        if record.unavailable and turn.addressed and not record.failed and not record.said:
            return Text(turn.t("unavailable"))  # a switched-off plugin might have answered
        if turn.is_private and not record.failed and not record.said:
            return Text(turn.t("commands_only" if turn.kind == "text" else "unsupported"))
        return None


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(text: str | None) -> str | None:
    """Lone UTF-16 surrogates (sent by buggy clients, legal in JSON) cannot be encoded as UTF-8
    for SQLite, OpenAI or Telegram itself: they become U+FFFD here, once for every plugin."""
    if text is None or not _LONE_SURROGATE.search(text):
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)


class _ChatLock:
    """A chat's lock, the turn it is running, and how many of its updates hold or wait for it
    (dropped at zero)."""

    __slots__ = ("current", "lock", "sender", "update_id", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0
        self.current: asyncio.Task[None] | None = None
        self.update_id: int | None = None
        """The update whose turn is running."""
        self.sender: int | None = None
        """Who sent it (`botcore.turn.sender_of`)."""

    def owned(self, sender: int | None, admin: bool = False) -> bool:
        """Whether `sender` may stop the running turn: their own, or anyone's for an `admin`."""
        return admin or (sender is not None and sender == self.sender)

    def stop(self) -> bool:
        """Cancel the running turn; False if there was none."""
        if self.current is None or self.current.done():
            return False
        self.current.cancel()
        return True


def _pressed(query: CallbackQuery, message: MaybeInaccessibleMessage) -> Message:
    """A button press as a message from the presser, in the chat (and topic) of the keyboard."""
    pressed = Message(
        message_id=message.message_id,
        date=message.date,
        chat=message.chat,
        from_user=query.from_user,
        message_thread_id=getattr(message, "message_thread_id", None),
        is_topic_message=getattr(message, "is_topic_message", None),
    )
    pressed.set_bot(query.get_bot())
    return pressed
