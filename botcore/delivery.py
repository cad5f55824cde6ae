"""The one place that sends replies to Telegram: Markdown to entities, splitting, streaming edits,
flood control and fallbacks, so that no plugin has to get any of it right."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import telegramify_markdown
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    MessageEntity,
    ReplyParameters,
)
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import ExtBot

from botcore.guard import STREAM, GuardedStream
from botcore.scheduler import Deferred, Dropped, Kind, Scheduler, retry_after
from botcore.split import Piece, split_message, utf16_len
from botcore.transport import MaybeSent
from botcore.turn import Outcome
from botcore.types import Invoice, Photo, Reasoning, Reply, Text, TextStream, UserError, Voice

if TYPE_CHECKING:
    from botcore.runtime import Runtime
    from botcore.turn import Turn

log = logging.getLogger(__name__)

T = TypeVar("T")
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
NETWORK_ATTEMPTS = 3
PATIENT_FIRST_WAIT = 0.25
PATIENT_MAX_WAIT = 30.0
"""A final answer's edit, safe to repeat, is retried after network errors with waits doubling
from the first to the second, for as long as bot.limits.max_wait allows (flood control's
ceiling): five resets in a row once took an answer that three tries 1.5 s apart gave up on."""
STARS = "XTR"
"""The currency of Telegram Stars, the only one for digital goods in Telegram apps."""
SUBSCRIPTION_PERIOD = 2592000
"""30 days, in seconds: the only subscription period the Bot API accepts."""
_GONE = ("message to edit not found", "message can't be edited")
REASONING_LIMIT = 1500
"""UTF-16 units of a model's reasoning shown above its answer: the latest part, so that long
thinking never crowds the answer out of its first message (the answer is what matters)."""
REASONING_MARK = "💭 "


class Sent(NamedTuple):
    """A message the bot sent, as far as replies need it: where it is, to edit it."""

    chat_id: int
    message_id: int


def render(
    text: str, markdown: bool, limit: int = TEXT_LIMIT, *, reasoning: str = ""
) -> list[Piece]:
    """Text -> message-sized (text, entities) pieces, cut at the most natural boundary that fits
    (never mid-word when a word boundary fits; see botcore.split); code blocks that straddle a
    cut continue as code in the next piece. `reasoning` (a model's thinking) goes first, as
    plain text in an expandable blockquote, cut to its last REASONING_LIMIT units."""
    entities: list[Any] = []
    if not markdown:
        plain = text
    else:
        plain, entities = telegramify_markdown.convert(_keep_tags(text))
    if not reasoning.strip():
        return split_message(plain, entities, limit)
    quote = REASONING_MARK + _tail(reasoning.strip(), REASONING_LIMIT)
    head = quote + "\n\n" if plain.strip() else quote
    shift = utf16_len(head)
    return split_message(
        head + plain,
        [
            MessageEntity(MessageEntity.EXPANDABLE_BLOCKQUOTE, 0, utf16_len(quote)),
            *(entity.copy_with(offset=entity.offset + shift) for entity in entities),
        ],
        limit,
    )


def _tail(text: str, limit: int) -> str:
    """The end of `text` in at most `limit` UTF-16 units, from a word boundary, after "…"."""
    if len(text) <= limit // 2 or utf16_len(text) <= limit:
        return text
    cut = text[-(limit - 1) :]
    while utf16_len(cut) > limit - 1:  # astral characters take two units
        cut = cut[len(cut) // 10 or 1 :]
    space = re.search(r"\s", cut[: len(cut) // 5])  # a word boundary near the start, if any
    return "…" + (cut[space.end() :] if space else cut)


_CODE = re.compile(r"(?ms)^[ \t]*(```|~~~).*?(?:^[ \t]*\1[ \t]*$|\Z)|(`+)(?:(?!\2).)+?\2")


def _keep_tags(text: str) -> str:
    """Escape "<" outside code, so that the converter shows a model's <tags> as text instead
    of dropping them as inline HTML (a model explaining <div> would lose the word)."""
    out, last = [], 0
    for match in _CODE.finditer(text):
        out.append(text[last : match.start()].replace("<", "\\<"))
        out.append(match.group(0))
        last = match.end()
    out.append(text[last:].replace("<", "\\<"))
    return "".join(out)


def _no_drafts(exc: TelegramError) -> bool:
    """True if the server has no sendMessageDraft (an older self-hosted Bot API server): 404
    (which python-telegram-bot reads as a bad token, though every other call works with it) or a
    400 saying the method is unknown or not available."""
    reason = str(exc).lower()
    if isinstance(exc, InvalidToken):
        return "not found" in reason
    return (
        isinstance(exc, BadRequest)
        and "method" in reason
        and ("not found" in reason or "not available" in reason or "unknown" in reason)
    )


def _truncate(text: str | None, limit: int) -> str | None:
    """A caption cut to `limit` UTF-16 units at a word boundary, marked with "…". Cut, not
    split: a caption belongs to its one photo or file, and the rest would read as a new message."""
    if text is None or len(text) <= limit // 2 or utf16_len(text) <= limit:
        return text
    pieces = split_message(text, [], limit - 1)
    return (pieces[0][0] if pieces else "") + "…"


class Delivery:
    """Sends replies for turns."""

    def __init__(self, app: Runtime) -> None:
        self.app = app
        self.drafts = True
        """False once the Bot API server refused sendMessageDraft: private answers stream by edits
        for the rest of the process."""

    async def deliver(self, turn: Turn, reply: Reply) -> None:
        """Send one reply; errors are logged, never raised (the turn is over either way)."""
        if not isinstance(reply, TextStream):
            turn.record.replies += 1  # a stream being shown goes on below this reply
        try:
            if isinstance(reply, Text):
                markup = await self._keyboard(turn, reply)
                await self.send_text(turn, reply.text, markdown=reply.markdown, markup=markup)
            elif isinstance(reply, TextStream):
                await self.send_stream(turn, reply)
            elif isinstance(reply, Photo):
                await self.api(
                    self.app.telegram.send_photo,
                    turn.chat_id,
                    reply.photo,
                    caption=_truncate(reply.caption, CAPTION_LIMIT),
                    reply_parameters=self._reply_to(turn),
                    message_thread_id=turn.topic_id,
                )
            elif isinstance(reply, Voice):
                await self.api(
                    self.app.telegram.send_voice,
                    turn.chat_id,
                    reply.voice,
                    caption=_truncate(reply.caption, CAPTION_LIMIT),
                    reply_parameters=self._reply_to(turn),
                    message_thread_id=turn.topic_id,
                )
            elif isinstance(reply, Invoice):
                await self.send_invoice(turn, reply)
            else:
                await self.api(
                    self.app.telegram.send_document,
                    turn.chat_id,
                    reply.data,
                    filename=reply.filename,
                    caption=_truncate(reply.caption, CAPTION_LIMIT),
                    reply_parameters=self._reply_to(turn),
                    message_thread_id=turn.topic_id,
                )
        except MaybeSent as exc:
            turn.record.note(Outcome.UNDELIVERED)
            log.warning("%s (update %s); not sent again", exc, turn.update_id)
        except RetryAfter:
            # The scheduler waited out flood control as long as bot.limits.max_wait allows.
            turn.record.note(Outcome.UNDELIVERED)
            log.warning("flood control outlasted bot.limits.max_wait; update %s", turn.update_id)
            self._tell_after_ban(turn)
        except Forbidden:
            turn.record.note(Outcome.BLOCKED)
            log.info(
                "chat %s blocked the bot or left; reply dropped (update %s)",
                turn.chat_id,
                turn.update_id,
            )
        except Exception:
            turn.record.note(Outcome.UNDELIVERED)
            log.exception("could not deliver the reply to update %s", turn.update_id)

    async def send_invoice(self, turn: Turn, invoice: Invoice) -> None:
        """An invoice in Stars (XTR: no provider token, one price). A subscription can only be
        an invoice link (the Bot API takes `subscription_period` there alone): it is sent as a
        message with a button that opens it."""
        bot = self.app.telegram
        price = [LabeledPrice(invoice.title, invoice.stars)]
        if not invoice.subscription:
            await self.api(
                bot.send_invoice,
                turn.chat_id,
                invoice.title,
                invoice.description,
                invoice.payload,
                STARS,
                price,
                reply_parameters=self._reply_to(turn),
                message_thread_id=turn.topic_id,
            )
            return
        link = await self.api(
            bot.create_invoice_link,
            invoice.title,
            invoice.description,
            invoice.payload,
            STARS,
            price,
            subscription_period=SUBSCRIPTION_PERIOD,
        )
        button = InlineKeyboardButton(turn.t("subscribe", stars=invoice.stars), url=link)
        await self.api(
            bot.send_message,
            turn.chat_id,
            f"{invoice.title}\n{invoice.description}",
            reply_markup=InlineKeyboardMarkup([[button]]),
            reply_parameters=self._reply_to(turn),
            message_thread_id=turn.topic_id,
        )

    async def chat_moved(self, old: int, new: int) -> None:
        """A group became supergroup `new` (Telegram's service messages; each comes twice, once
        per chat): replies to it go to `new`, and the plugins move what they keep (chat_moved)."""
        scheduler = getattr(self.app.telegram, "rate_limiter", None)
        if isinstance(scheduler, Scheduler):
            scheduler.moved.setdefault(old, new)
        # Each of the pair calls the plugins: moving again finds nothing left under `old`.
        await self.app.call_each("chat_moved", old_chat_id=old, new_chat_id=new)

    def _tell_after_ban(self, turn: Turn) -> None:
        """Once flood control lets the chat be written to again, say that an answer was lost
        (once per chat and ban: botcore.scheduler.Scheduler.notify_after_ban)."""
        scheduler = getattr(self.app.telegram, "rate_limiter", None)
        if scheduler is None or not hasattr(scheduler, "notify_after_ban"):
            return
        text = turn.t("flood_lost")
        chat_id, topic = turn.chat_id, turn.topic_id  # in the asker's topic, like the answer
        scheduler.notify_after_ban(
            chat_id,
            lambda: self.app.telegram.send_message(chat_id, text, message_thread_id=topic),
        )

    def _reply_to(self, turn: Turn) -> ReplyParameters | None:
        """In groups a reply quotes the message it answers; in private chats that is noise."""
        if turn.is_private:
            return None
        return ReplyParameters(turn.message.message_id, allow_sending_without_reply=True)

    async def api(
        self, call: Callable[..., Awaitable[T]], *args: Any, patient: bool = False, **kwargs: Any
    ) -> T:
        """Call the Bot API, retrying network errors a few times; `patient` (a final answer's
        edit: repeating it is harmless) for up to bot.limits.max_wait. Flood control is the
        scheduler's (botcore.scheduler): a RetryAfter that gets here has outlasted max_wait."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        while True:
            try:
                return await call(*args, **kwargs)
            except (BadRequest, RetryAfter, MaybeSent):  # MaybeSent: again could mean twice
                raise
            except (TimedOut, NetworkError) as exc:
                attempt += 1
                if patient:
                    wait = min(PATIENT_FIRST_WAIT * 2 ** (attempt - 1), PATIENT_MAX_WAIT)
                    if loop.time() + wait - started > self.app.config.bot.limits.max_wait:
                        raise
                    log.info("Bot API: %s; trying again in %.2f s", type(exc).__name__, wait)
                elif attempt >= NETWORK_ATTEMPTS:
                    raise
                else:
                    wait = 0.5 * attempt
                await asyncio.sleep(wait)

    async def send_text(
        self,
        turn: Turn,
        text: str,
        *,
        markdown: bool = False,
        markup: dict[str, Any] | None = None,
    ) -> list[Sent]:
        """Send text in as many messages as it needs; `markup` (inline buttons) under the last."""
        sent = []
        pieces = render(text, markdown)
        for number, piece in enumerate(pieces, 1):
            last = number == len(pieces)
            sent.append(await self._send_piece(turn, piece, markup=markup if last else None))
        return sent

    async def _keyboard(self, turn: Turn, reply: Text) -> dict[str, Any] | None:
        """The reply's buttons as reply_markup, kept for the user and chat it goes to."""
        if not reply.buttons:
            return None
        if reply.plugin is None:  # buttons whose presses could reach no plugin: not shown
            log.warning(
                "a reply's buttons have no plugin to answer them (update %s)", turn.update_id
            )
            return None
        # A message sent on behalf of a chat (an anonymous admin, a channel) names no person to
        # keep the keyboard for: it is the chat's, and any of its members may press it once.
        user = None if turn.message.sender_chat is not None else turn.sender_id
        return await self.app.keyboards.issue(
            reply.plugin, reply.buttons, user=user, chat=turn.chat_id
        )

    async def _post(self, method: str, params: dict[str, Any], *, kind: Kind = "final") -> Any:
        """A Bot API call through python-telegram-bot's request path (errors, defaults, rate
        limiter) with the result left as JSON: parsing the returned Message (some 90 optional
        fields) cost more CPU than the request itself, and replies need only its id (bench/).
        `kind` tells the scheduler what it is: a "final" answer, a "preview" or "typing"."""
        bot = self.app.telegram
        if kind != "final" and getattr(bot, "rate_limiter", None) is not None:
            return await bot._post(method, params, api_kwargs=_rate_limit_args(kind))
        return await bot._post(method, params)

    async def _send_piece(
        self,
        turn: Turn,
        piece: Piece,
        *,
        kind: Kind = "final",
        markup: dict[str, Any] | None = None,
    ) -> Sent:
        text, entities = piece
        params: dict[str, Any] = {
            "chat_id": turn.chat_id,
            "text": text,
            "reply_parameters": self._reply_to(turn),
            "message_thread_id": turn.topic_id,  # in the asker's topic (None: General)
            "reply_markup": markup,
        }
        try:
            result = await self.api(
                self._post, "sendMessage", {**params, "entities": entities or None}, kind=kind
            )
        except BadRequest as exc:
            if not entities or "entit" not in str(exc).lower():
                raise
            log.warning("Telegram refused the formatting (%s); sending plain text", exc)
            result = await self.api(self._post, "sendMessage", params, kind=kind)
        return Sent(result["chat"]["id"], result["message_id"])

    async def _edit_piece(self, message: Sent, piece: Piece) -> bool:
        """Make a sent message show `piece`; False if the message is gone (deleted, or left
        behind in a group that became a supergroup): the caller sends the piece anew."""
        text, entities = piece
        params: dict[str, Any] = {
            "chat_id": message.chat_id,
            "message_id": message.message_id,
            "text": text,
        }
        try:
            await self.api(
                self._post,
                "editMessageText",
                {**params, "entities": entities or None},
                patient=True,
            )
        except BadRequest as exc:
            reason = str(exc).lower()
            if "not modified" in reason:
                return True
            if any(gone in reason for gone in _GONE):
                return False
            if not entities or "entit" not in reason:
                raise
            log.warning("Telegram refused the formatting (%s); editing to plain text", exc)
            await self.api(self._post, "editMessageText", params, patient=True)
        return True

    async def send_stream(self, turn: Turn, reply: TextStream) -> None:
        """Show streamed text as it grows, then the final formatted text (split over several
        messages if it outgrows one): in private chats as drafts (sendMessageDraft, no edit
        flood, no flicker), in groups or without drafts as a message and throttled edits."""
        settings = self.app.config.bot
        interval = (
            settings.stream_edit_interval
            if turn.is_private
            else settings.group_stream_edit_interval
        )
        loop = asyncio.get_running_loop()
        shown = _Shown(random.randint(1, 2**31 - 1) if turn.is_private and self.drafts else None)
        buffer = ""
        thoughts = ""  # the model's reasoning (Reasoning pieces): shown, never the answer
        # Where the text of the messages now being written starts in `thoughts` and `buffer`:
        # after a reply the turn sent meanwhile (a tool's approval request), the answer goes on
        # in new messages below it, not in edits of messages above it, unseen.
        since = (0, 0)
        heard = turn.record.replies
        # the last render and what it showed, reused if nothing followed
        rendered: tuple[tuple[str, str], list[Piece]] = (("", ""), [])
        last_show = 0.0
        quiet_until = 0.0
        error: str | None = None
        try:
            async for chunk in reply.chunks:
                if turn.record.replies != heard:
                    heard = turn.record.replies
                    if shown.messages:  # finish them as they are; what follows goes below
                        thought, said = thoughts[since[0] :], buffer[since[1] :]
                        if said.strip() or thought.strip():
                            pieces = render(said, reply.markdown, reasoning=thought)
                            with contextlib.suppress(TelegramError):
                                await self._show(turn, shown, pieces, final=True)
                        since = (len(thoughts), len(buffer))
                        shown = _Shown(shown.draft_id and random.randint(1, 2**31 - 1))
                        rendered = (("", ""), [])
                if isinstance(chunk, Reasoning):
                    thoughts += chunk
                else:
                    buffer += chunk
                now = loop.time()
                thought, said = thoughts[since[0] :], buffer[since[1] :]
                if not (said.strip() or thought.strip()) or now < quiet_until:
                    continue
                if not shown.started or now - last_show >= interval:
                    rendered = ((thought, said), render(said, reply.markdown, reasoning=thought))
                    await _before_show(turn, reply, buffer)
                    try:
                        await self._show(turn, shown, rendered[1], final=False)
                    except RetryAfter as exc:
                        quiet_until = loop.time() + retry_after(exc)
                    except Forbidden:
                        raise
                    except TelegramError as exc:  # a lost preview is fine: the final text follows
                        log.warning("streaming preview failed (update %s): %s", turn.update_id, exc)
                    last_show = loop.time()
            self.app.guard.succeeded(reply.plugin)
        except UserError as exc:
            self.app.guard.user_error(turn, reply.plugin)
            error = exc.message
        except TelegramError:
            raise
        except asyncio.CancelledError:  # /cancel: leave what was shown, formatted and marked
            thought, said = thoughts[since[0] :], buffer[since[1] :]
            if said.strip() or thought.strip():
                cut = said + " …" if said.strip() else said
                with contextlib.suppress(TelegramError):
                    pieces = render(cut, reply.markdown, reasoning=thought)
                    await self._show(turn, shown, pieces, final=True)
            raise
        except Exception as exc:
            if not isinstance(reply, GuardedStream):  # a guarded one was judged as it broke
                self.app.guard.failed(turn, reply.plugin, STREAM, exc)
            turn.record.note(Outcome.ERROR)  # whatever was shown, the answer broke off
            error = turn.t("error")
        finally:
            aclose = getattr(reply.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        thought, said = thoughts[since[0] :], buffer[since[1] :]
        if said.strip() or thought.strip():
            fresh = rendered[0] != (thought, said)
            pieces = render(said, reply.markdown, reasoning=thought) if fresh else rendered[1]
            if fresh:
                await _before_show(turn, reply, buffer)
            await self._show(turn, shown, pieces, final=True)
        if error is not None:
            await self.send_text(turn, error)

    async def _show(self, turn: Turn, shown: _Shown, pieces: list[Piece], *, final: bool) -> None:
        """Make the messages of a streamed answer show `pieces`: edit what changed, send the rest."""
        if shown.draft_id is not None and not final:
            # A long answer: the pieces before the last are finished and go out as messages, the
            # draft shows the one being written (the reader is never left waiting on a frozen
            # first 4096 characters). The final text only adds pieces, never edits them (save
            # Markdown that changes across a cut, e.g. a bold span closed in a later piece).
            for piece in pieces[len(shown.messages) : -1]:
                shown.messages.append(await self._send_piece(turn, piece))
                shown.pieces.append(piece)
            if len(pieces) <= len(shown.messages) or await self._draft(turn, shown, pieces[-1]):
                return
            shown.draft_id = None  # no drafts on this server: this answer goes on by edits
        for index, piece in enumerate(pieces):
            if index < len(shown.messages):
                if shown.pieces[index] != piece:
                    if final:
                        if not await self._edit_piece(shown.messages[index], piece):
                            log.info(
                                "a preview is gone (update %s): the answer goes anew",
                                turn.update_id,
                            )
                            shown.messages[index] = await self._send_piece(turn, piece)
                    elif not await self._edit_preview(shown.messages[index], piece):
                        continue  # not shown: the final edit must still try (as plain text)
                    shown.pieces[index] = piece
            else:
                try:
                    sent = await self._send_piece(turn, piece, kind="final" if final else "preview")
                except Dropped:  # no budget for a new preview message now: the final sends it
                    return
                shown.messages.append(sent)
                shown.pieces.append(piece)

    async def _draft(self, turn: Turn, shown: _Shown, piece: Piece) -> bool:
        """Show the piece being written as the chat's draft; one try, no waiting (a lost draft is
        fine: the final text follows). False if the server has no drafts (remembered)."""
        text, entities = piece
        params = {
            "chat_id": turn.chat_id,
            "message_thread_id": turn.topic_id,  # a private chat's topic (None: none)
            "draft_id": shown.draft_id,
            "text": text,
            "entities": entities or None,
        }
        try:
            await self._post("sendMessageDraft", params, kind="preview")
        except (Deferred, Dropped):
            pass  # queued behind the chat's budget (a newer draft replaces it) or superseded
        except RetryAfter:
            raise
        except (BadRequest, InvalidToken) as exc:
            if _no_drafts(exc):
                if self.drafts:
                    log.info("the Bot API server has no drafts (%s): streaming by edits", exc)
                self.drafts = False
                return False
            log.debug("draft refused: %s", exc)
        shown.drafted = True  # shown or not, the next draft waits for the interval
        return True

    async def _edit_preview(self, message: Sent, piece: Piece) -> bool:
        """A preview edit: sent now if the flood budget allows, else queued by the scheduler
        (newer text replaces it; the final edit drops it). False if it is not shown (yet), or
        Telegram refused it: the final edit must then still be made."""
        text, entities = piece
        params = {
            "chat_id": message.chat_id,
            "message_id": message.message_id,
            "text": text,
            "entities": entities or None,
        }
        try:
            await self._post("editMessageText", params, kind="preview")
        except (Deferred, Dropped):
            return False
        except RetryAfter:
            raise
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                log.debug("preview edit refused: %s", exc)
                return False
        return True


async def _before_show(turn: Turn, reply: TextStream, text: str) -> None:
    """Let the stream's plugin keep `text` before the user sees it (TextStream.on_show); its
    failure is logged and the answer goes on."""
    if reply.on_show is None or not text.strip():  # reasoning alone: no answer to keep yet
        return
    try:
        await reply.on_show(text)
    except Exception:
        log.exception("keeping the shown answer failed (update %s)", turn.update_id)


def _rate_limit_args(kind: Kind) -> dict[str, Any]:
    """`kind` in the form python-telegram-bot hands it to the rate limiter (rate_limit_args)."""
    return ExtBot._merge_api_rl_kwargs(None, kind) or {}


class _Shown:
    """The messages a streamed answer occupies and what each currently shows; `draft_id` while
    it streams as a draft (one per answer, so a client shows one growing draft)."""

    def __init__(self, draft_id: int | None = None) -> None:
        self.draft_id = draft_id
        self.drafted = False
        self.messages: list[Sent] = []
        self.pieces: list[Piece] = []

    @property
    def started(self) -> bool:
        """True once the user saw something: the next preview waits for the interval."""
        return self.drafted or bool(self.messages)
