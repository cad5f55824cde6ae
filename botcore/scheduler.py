"""One scheduler for every Bot API call that sends or edits: Telegram's flood budgets, final
messages before previews, coalesced previews, the typing action last, and 429s respected.

It is a python-telegram-bot ``BaseRateLimiter``, so every call made through the bot passes it:
botcore's delivery, a plugin's own ``app.telegram.send_*``, admin alerts, "typing…". Why not
PTB's ``AIORateLimiter`` (aiolimiter): a leaky bucket hands out capacity first come, first
served; it cannot let a final answer overtake a preview queued earlier, replace a queued preview
by newer text, or drop previews and stale typing actions, and it halts every chat after any 429.
Those are the whole point here, and a token bucket is a dozen lines, so the budgets are our own.

The model (Telegram's Bot FAQ; botcore.testing.flood enforces the same in the fake):

* every chat: ``chat_per_second`` messages a second, bursts of ``chat_burst``;
* groups, supergroups and channels also: ``group_per_minute`` in any rolling minute;
* the bot: ``global_per_second`` messages a second over all chats, bursts of ``global_burst``;
* sendChatAction and sendMessageDraft (a draft is a typing action underneath) have their own
  per-chat windows (``TYPING_WINDOWS``) and do not count as messages.

Telegram counts a call when it arrives; we count it when it leaves. The bursts are therefore
smaller than Telegram's (2 against ~3 a chat, a third of a second against a second's worth
overall), so that network jitter cannot squeeze calls sent within budget into a burst that is
not; rolling windows are stamped when the answer comes back, which is never earlier than the
arrival. Each chat has one message call in flight at a time: that keeps its messages in order,
and a final edit can never be overtaken by the preview it replaces.

Kinds (``rate_limit_args``; Delivery passes them, everything else is ``"final"``):

* ``"final"``: never dropped. After a 429 it waits as long as Telegram asks, up to
  ``max_wait`` seconds from when it was made; past that ``RetryAfter`` is raised (Delivery then
  tells the user, once the ban is over, with :meth:`Scheduler.notify_after_ban`). A final also
  drops what is still queued for its chat below it: those previews and typing actions are stale.
* ``"preview"``: goes at once if the budgets allow. Otherwise an edit or a draft is queued and
  :class:`Deferred` is raised: it goes when the budget allows, unless newer text for the same
  message replaces it (coalescing) or a final for its chat drops it; a new message (no
  message to edit yet) is not queued: :class:`Dropped`.
* ``"typing"`` (sendChatAction's default): last in line; dropped once ``TYPING_STALE`` old.

After a 429 no call goes to that chat until ``retry_after`` has passed (its typing budget apart,
as Telegram counts it apart). A 429 that is likely the global limit (the bot was sending at more
than half its global budget, or a second chat got one within a second) stops every chat: Telegram
does not say which budget refused, and a call inside the global window lengthens the ban.
With ``enabled = false`` (a local Bot API server, paid broadcasts) no budget is enforced, but
429s are still respected this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import math
import warnings
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from telegram.error import ChatMigrated, RetryAfter, TelegramError
from telegram.ext import BaseRateLimiter
from telegram.warnings import PTBDeprecationWarning

__all__ = ["Deferred", "Dropped", "Kind", "Limits", "Scheduler", "retry_after"]

log = logging.getLogger(__name__)

Kind = Literal["final", "preview", "typing"]
_PRIORITY: dict[str, int] = {"final": 0, "preview": 1, "typing": 2}
FINAL, PREVIEW, TYPING = 0, 1, 2

# Calls Telegram counts as messages (lower-cased): they put or change a message in a chat.
MESSAGE_METHODS = frozenset(
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
        "sendphoto",
        "sendvoice",
        "sendaudio",
        "senddocument",
        "sendvideo",
        "sendanimation",
        "sendvideonote",
        "sendsticker",
    }
)
ACTION_METHODS = frozenset({"sendchataction", "sendmessagedraft"})
TYPING_WINDOWS: tuple[tuple[float, int], ...] = ((5.0, 20), (30.0, 40))
"""Per chat (seconds, calls) windows of sendChatAction and sendMessageDraft together, as bots
that hit them report (Telegram does not document them)."""
TYPING_STALE = 3.0
"""Seconds a queued typing action may wait; "typing…" shows ~5 s, later it would be a lie."""
BAN_MARGIN = 0.1
"""Seconds added to ``retry_after``: Telegram's window opened when our call arrived, not when
its answer reached us, but clocks and rounding deserve a little slack (PTB adds the same)."""
_HOT = 0.5
"""A 429 while more than this share of the global burst is spent is taken as global."""


class Deferred(TelegramError):
    """A preview could not go now and was queued: it is sent later unless replaced or dropped."""

    def __init__(self) -> None:
        super().__init__("preview queued behind the flood budget")


class Dropped(TelegramError):
    """A preview or typing action was not sent: a final answer or newer text made it stale."""

    def __init__(self) -> None:
        super().__init__("dropped by the delivery scheduler")


@dataclass(frozen=True)
class Limits:
    """The budgets the scheduler keeps (defaults: Telegram's documented limits, see the module)."""

    enabled: bool = True
    global_per_second: float = 30.0
    global_burst: float = 10.0
    chat_per_second: float = 1.0
    chat_burst: float = 2.0
    group_per_minute: int = 20
    max_wait: float = 600.0


def retry_after(exc: RetryAfter) -> float:
    """RetryAfter's wait in seconds (an int with a deprecation warning in PTB 22, or a timedelta)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class _Bucket:
    """A token bucket: ``rate`` tokens a second, holding at most ``burst``."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, max(1.0, burst)
        self.tokens, self.stamp = self.burst, now

    def ready_at(self, now: float) -> float:
        """When the next token is there (``now`` if it is)."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return now if self.tokens >= 1 else now + (1 - self.tokens) / self.rate


class _Window:
    """At most ``count`` calls in any rolling ``period``, stamped when each call's answer came."""

    __slots__ = ("count", "pending", "period", "times")

    def __init__(self, period: float, count: int) -> None:
        self.period, self.count = period, count
        self.times: deque[float] = deque()
        self.pending = 0  # calls in flight: counted, not stamped yet

    def ready_at(self, now: float) -> float:
        times = self.times
        while times and times[0] + self.period <= now:
            times.popleft()
        over = len(times) + self.pending - self.count + 1  # stamps that must expire first
        if over <= 0:
            return now
        if over > len(times):
            return now + self.period  # all in flight: their answers will wake the dispatcher
        return times[over - 1] + self.period


class _Lane:
    """One chat's message calls, or its typing-class calls: budgets, ban, queue, one in flight."""

    __slots__ = ("buckets", "busy", "chat", "messages", "queue", "until", "windows")

    def __init__(self, chat: int | str | None, messages: bool) -> None:
        self.chat = chat
        self.messages = messages  # counts against the global budget and bans
        self.buckets: list[_Bucket] = []
        self.windows: list[_Window] = []
        self.busy = False
        self.until = 0.0  # banned (429) until
        self.queue: list[_Entry] = []

    def ready_at(self, now: float) -> float:
        """When this lane's own budgets and ban let a call go."""
        at = max(now, self.until)
        for bucket in self.buckets:
            at = max(at, bucket.ready_at(now))
        for window in self.windows:
            at = max(at, window.ready_at(now))
        return at

    def take(self) -> None:
        self.busy = True
        for bucket in self.buckets:
            bucket.tokens -= 1
        for window in self.windows:
            window.pending += 1

    def idle(self, now: float) -> bool:
        return (
            not self.busy
            and not self.queue
            and self.until <= now
            and all(b.ready_at(now) == now and b.tokens >= b.burst for b in self.buckets)
            and all(not w.times or w.times[-1] + w.period <= now for w in self.windows)
        )


class _Chat:
    __slots__ = ("actions", "messages")

    def __init__(self, messages: _Lane, actions: _Lane) -> None:
        self.messages, self.actions = messages, actions


Call = Callable[[], Coroutine[Any, Any, Any]]


class _Entry:
    """A queued call: awaited by its caller (``future``) or run by the scheduler (detached)."""

    __slots__ = ("call", "deadline", "future", "key", "lane", "paid", "priority", "seq")

    def __init__(
        self,
        lane: _Lane,
        priority: int,
        seq: int,
        key: Any,
        paid: bool,
        future: asyncio.Future[None] | None,
        call: Call | None,
        deadline: float,
    ) -> None:
        self.lane, self.priority, self.seq, self.key, self.paid = lane, priority, seq, key, paid
        self.future, self.call, self.deadline = future, call, deadline

    def order(self) -> tuple[int, int]:
        return self.priority, self.seq


class Scheduler(BaseRateLimiter[str]):
    """Telegram's flood budgets for every send and edit, with priorities and coalescing."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.stats: Counter[str] = Counter()
        """What happened: sent_at_once, queued, deferred, coalesced, dropped, flood (429s),
        flood_global, given_up (finals past max_wait)."""
        self._chats: dict[int | str | None, _Chat] = {}
        self._global: _Bucket | None = None
        self._global_until = 0.0
        self._starved = False  # a final or preview is waiting for the global budget
        self._last_ban: tuple[float, int | str | None] = (-math.inf, None)
        self._queued = 0
        self._seq = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None
        self._waker: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._notices: set[int | str | None] = set()
        self._stopping = False
        self.moved: dict[int, int] = {}
        """Groups upgraded to supergroups (Telegram's ChatMigrated): old chat id -> new. Every
        later call to the old id goes to the new one."""

    async def initialize(self) -> None:
        """Nothing to set up: state is made as chats appear."""

    def stop_waiting(self) -> None:
        """The bot is stopping: finals no longer wait out bans, which would hold the shutdown
        (up to max_wait); those waiting now get their RetryAfter. Budgets still pace the rest."""
        self._stopping = True
        now = asyncio.get_running_loop().time()
        for chat in self._chats.values():
            for lane in (chat.messages, chat.actions):
                for entry in [e for e in lane.queue if e.priority == FINAL]:
                    until = self._banned_until(lane, entry.paid)
                    if until > now:
                        self._remove(entry, _too_many(until - now))

    async def shutdown(self) -> None:
        """Stop the dispatcher, queued previews and pending notices (the bot is stopping)."""
        tasks = [*self._tasks, *([self._dispatcher] if self._dispatcher else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._dispatcher = None
        for chat in self._chats.values():
            for lane in (chat.messages, chat.actions):
                for entry in lane.queue:
                    if entry.future is not None and not entry.future.done():
                        entry.future.set_exception(Dropped())
                lane.queue.clear()
        self._queued = 0

    # ------------------------------------------------------------------ the calls

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: str | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        """Send one Bot API call when its budgets allow (see the module for the rules). A call to
        a group that became a supergroup goes to the supergroup, now and from then on: the
        answer being written there is not lost."""
        old = _chat_id(data.get("chat_id"))
        new = self.moved.get(old) if old is not None else None
        followed = new is not None
        if followed:
            data["chat_id"] = new  # `args` holds the same dict
        try:
            return await self._process(callback, args, kwargs, endpoint, data, rate_limit_args)
        except ChatMigrated as exc:
            if old is None or followed:
                raise
            if old not in self.moved:  # else a call made at the same time got here first
                self.moved[old] = exc.new_chat_id
                log.info("chat %s became supergroup %s: following it", old, exc.new_chat_id)
            data["chat_id"] = self.moved[old]
            return await self._process(callback, args, kwargs, endpoint, data, rate_limit_args)

    async def _process(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: str | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        method = endpoint.lower()
        if method in MESSAGE_METHODS:
            messages = True
        elif method in ACTION_METHODS:
            messages = False
        else:  # reading, deleting, answering callbacks, setting commands: not flood-counted
            return await callback(*args, **kwargs)
        if rate_limit_args is not None:
            priority = _PRIORITY[rate_limit_args]
        elif method == "sendchataction":
            priority = TYPING
        elif method == "sendmessagedraft":
            priority = PREVIEW
        else:
            priority = FINAL
        chat = self._chat(data.get("chat_id"))
        lane = chat.messages if messages else chat.actions
        paid = bool(data.get("allow_paid_broadcast"))
        loop = asyncio.get_running_loop()
        now = loop.time()

        def call() -> Coroutine[Any, Any, Any]:
            return callback(*args, **kwargs)

        if priority == FINAL:
            if self._queued:
                self._drop_below_final(chat)
            return await self._final(lane, paid, call, now)  # type: ignore[no-any-return]
        if not lane.queue and self._may_go(lane, paid, now):
            lane.take()
            self._take_global(lane, paid)
            self.stats["sent_at_once"] += 1
            return await self._run(lane, call)  # type: ignore[no-any-return]
        key = _preview_key(method, data) if priority == PREVIEW else "typing"
        if key is None:  # a preview that would be a new message: not worth waiting for
            self.stats["dropped"] += 1
            raise Dropped
        if priority == PREVIEW:
            self._defer(lane, key, paid, call)
            raise Deferred
        future: asyncio.Future[None] = loop.create_future()
        entry = self._enqueue(lane, TYPING, key, paid, future, None, now + TYPING_STALE)
        await self._granted(entry)
        return await self._run(lane, call)  # type: ignore[no-any-return]

    async def _final(self, lane: _Lane, paid: bool, call: Call, now: float) -> Any:
        """A final call: waits its turn and out every 429, up to ``max_wait`` from now."""
        deadline = now + self.limits.max_wait
        seq = next(self._seq)
        while True:
            until = self._banned_until(lane, paid)
            if until > deadline or (self._stopping and until > now):
                self._give_up(lane, until - now)
                raise _too_many(until - now)
            if not lane.queue and self._may_go(lane, paid, now):
                lane.take()
                self._take_global(lane, paid)
                self.stats["sent_at_once"] += 1
            else:
                loop = asyncio.get_running_loop()
                entry = _Entry(lane, FINAL, seq, None, paid, loop.create_future(), None, math.inf)
                self._push(entry)
                self.stats["queued"] += 1
                await self._granted(entry)
            try:
                return await self._run(lane, call)
            except RetryAfter:
                now = asyncio.get_running_loop().time()
                if lane.until > deadline or self._stopping:
                    self._give_up(lane, lane.until - now)
                    raise
                log.info("flood control: chat %s waits %.1f s", lane.chat, lane.until - now)

    def _give_up(self, lane: _Lane, banned_for: float) -> None:
        """Count and log a final answer that flood control holds past max_wait (or shutdown)."""
        self.stats["given_up"] += 1
        log.warning(
            "flood control holds chat %s for %.0f s more, past bot.limits.max_wait; "
            "an answer is given up",
            lane.chat,
            banned_for,
        )

    async def _run(self, lane: _Lane, call: Call) -> Any:
        """Make a call the budgets allowed (lane taken); note a 429; free the lane."""
        try:
            return await call()
        except RetryAfter as exc:
            self._flooded(lane, retry_after(exc))
            raise
        finally:
            self._release(lane)

    async def _run_detached(self, lane: _Lane, call: Call) -> None:
        """A deferred preview, sent by the scheduler: nobody waits for it, a failure is harmless."""
        try:
            await self._run(lane, call)
        except TelegramError as exc:
            log.debug("queued preview for chat %s failed: %s", lane.chat, exc)

    # ------------------------------------------------------------------ budgets

    def _chat(self, chat_id: Any) -> _Chat:
        with contextlib.suppress(ValueError, TypeError):
            chat_id = int(chat_id)
        chat = self._chats.get(chat_id)
        if chat is None:
            if len(self._chats) >= 4096 and len(self._chats) & 1023 == 0:
                self._forget_idle()
            chat = self._chats[chat_id] = self._new_chat(chat_id)
        return chat

    def _new_chat(self, chat_id: int | str | None) -> _Chat:
        limits = self.limits
        messages, actions = _Lane(chat_id, True), _Lane(chat_id, False)
        if limits.enabled:
            now = asyncio.get_running_loop().time()
            if chat_id is not None:
                messages.buckets.append(_Bucket(limits.chat_per_second, limits.chat_burst, now))
                # Negative ids are groups, supergroups and channels; a @username is a channel.
                if isinstance(chat_id, str) or chat_id < 0:
                    messages.windows.append(_Window(60.0, limits.group_per_minute))
                actions.windows.extend(_Window(period, count) for period, count in TYPING_WINDOWS)
            if self._global is None:
                self._global = _Bucket(limits.global_per_second, limits.global_burst, now)
        return _Chat(messages, actions)

    def _forget_idle(self) -> None:
        """Chats whose budgets are full again and nothing waits: their state is the default."""
        now = asyncio.get_running_loop().time()
        for chat_id in [
            chat_id
            for chat_id, chat in self._chats.items()
            if chat.messages.idle(now) and chat.actions.idle(now)
        ]:
            del self._chats[chat_id]

    def _needs_global(self, lane: _Lane, paid: bool) -> bool:
        return lane.messages and not paid

    def _banned_until(self, lane: _Lane, paid: bool) -> float:
        return max(lane.until, self._global_until if self._needs_global(lane, paid) else 0.0)

    def _may_go(self, lane: _Lane, paid: bool, now: float) -> bool:
        if lane.busy or lane.ready_at(now) > now:
            return False
        if not self._needs_global(lane, paid):
            return True
        if self._global_until > now or self._starved:
            return False
        return self._global is None or self._global.ready_at(now) <= now

    def _take_global(self, lane: _Lane, paid: bool) -> None:
        if self._global is not None and self._needs_global(lane, paid):
            self._global.tokens -= 1

    def _release(self, lane: _Lane) -> None:
        lane.busy = False
        if lane.windows:
            now = asyncio.get_running_loop().time()
            for window in lane.windows:
                window.pending -= 1
                window.times.append(now)
        if lane.queue:
            self._poke()

    def _flooded(self, lane: _Lane, wait: float) -> None:
        """A 429: ban the lane (and everyone, if it looks global) for ``wait`` seconds."""
        now = asyncio.get_running_loop().time()
        until = now + wait + BAN_MARGIN
        lane.until = max(lane.until, until)
        self.stats["flood"] += 1
        if lane.messages:
            budget = self._global
            hot = budget is not None and (
                budget.ready_at(now) > now or budget.tokens < budget.burst * _HOT
            )
            when, other = self._last_ban
            if hot or (other != lane.chat and now - when < 1.0):
                self._global_until = max(self._global_until, until)
                self.stats["flood_global"] += 1
            self._last_ban = (now, lane.chat)
        log.info("flood control: chat %s got 429, retry after %.0f s", lane.chat, wait)

    # ------------------------------------------------------------------ the queue

    def _push(self, entry: _Entry) -> None:
        entry.lane.queue.append(entry)
        self._queued += 1
        self._poke()

    def _enqueue(
        self,
        lane: _Lane,
        priority: int,
        key: Any,
        paid: bool,
        future: asyncio.Future[None] | None,
        call: Call | None,
        deadline: float,
    ) -> _Entry:
        for queued in lane.queue:  # the same message (or the typing slot): the newest wins
            if queued.key == key and queued.priority == priority:
                self.stats["coalesced"] += 1
                self._remove(queued, Dropped())
                break
        entry = _Entry(lane, priority, next(self._seq), key, paid, future, call, deadline)
        self._push(entry)
        return entry

    def _defer(self, lane: _Lane, key: Any, paid: bool, call: Call) -> None:
        """Queue a preview that nobody waits for; newer text for the same message replaces it."""
        self.stats["deferred"] += 1
        for queued in lane.queue:
            if queued.key == key and queued.priority == PREVIEW and queued.future is None:
                queued.call = call  # keeps its place in line: only the text is newer
                self.stats["coalesced"] += 1
                return
        self._enqueue(lane, PREVIEW, key, paid, None, call, math.inf)

    async def _granted(self, entry: _Entry) -> None:
        """Wait until the dispatcher lets ``entry`` go (it has taken the budgets by then)."""
        assert entry.future is not None
        try:
            await entry.future
        except asyncio.CancelledError:
            if entry.future.done() and not entry.future.cancelled():
                if entry.future.exception() is None:  # granted, then cancelled: free the lane
                    self._release(entry.lane)
            else:
                self._remove(entry, None)
            raise

    def _remove(self, entry: _Entry, exc: BaseException | None) -> None:
        with contextlib.suppress(ValueError):
            entry.lane.queue.remove(entry)
            self._queued -= 1
        if exc is not None and entry.future is not None and not entry.future.done():
            entry.future.set_exception(exc)
            entry.future.exception()  # retrieved: nobody may be left to await it

    def _drop_below_final(self, chat: _Chat) -> None:
        """A final answer is coming: what is queued for its chat below it is stale."""
        for lane in (chat.messages, chat.actions):
            for entry in [e for e in lane.queue if e.priority > FINAL]:
                self.stats["dropped"] += 1
                self._remove(entry, Dropped())

    def _poke(self) -> None:
        """Wake the dispatcher, or start it."""
        if self._waker is not None and not self._waker.done():
            self._waker.set_result(None)
        elif self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def _dispatch(self) -> None:
        """Grant queued calls as budgets allow: finals first, then previews, then typing, in the
        order they came; sleep until the next budget refills, a ban ends or a call returns."""
        loop = asyncio.get_running_loop()
        try:
            while self._queued:
                now = loop.time()
                wake = math.inf
                ready: list[_Entry] = []
                for chat in list(self._chats.values()):
                    for lane in (chat.messages, chat.actions):
                        if not lane.queue:
                            continue
                        for entry in [e for e in lane.queue if e.deadline <= now]:
                            self.stats["dropped"] += 1
                            self._remove(entry, Dropped())
                        for entry in lane.queue:
                            wake = min(wake, entry.deadline)
                        if lane.busy or not lane.queue:
                            continue  # its answer wakes us
                        at = lane.ready_at(now)
                        if at > now:
                            wake = min(wake, at)
                            continue
                        ready.append(min(lane.queue, key=_Entry.order))
                ready.sort(key=_Entry.order)
                starved = False
                for entry in ready:
                    if self._needs_global(entry.lane, entry.paid):
                        at = self._global_until
                        if self._global is not None:
                            at = max(at, self._global.ready_at(now))
                        if at > now:
                            wake, starved = min(wake, at), True
                            continue
                    self._grant(entry)
                self._starved = starved
                if not self._queued:
                    break
                self._waker = loop.create_future()
                timer = loop.call_at(wake, _wake, self._waker) if wake < math.inf else None
                try:
                    await self._waker
                finally:
                    self._waker = None
                    if timer is not None:
                        timer.cancel()
        finally:
            self._dispatcher = None
            self._starved = False

    def _grant(self, entry: _Entry) -> None:
        lane = entry.lane
        self._remove(entry, None)
        lane.take()
        self._take_global(lane, entry.paid)
        if entry.future is not None:
            entry.future.set_result(None)
        elif entry.call is not None:
            task = asyncio.get_running_loop().create_task(self._run_detached(lane, entry.call))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ after a ban

    def notify_after_ban(self, chat_id: int, send: Callable[[], Awaitable[Any]]) -> None:
        """Run ``send`` (telling the user an answer was lost) once the chat's ban is over; once
        per chat, however many answers the same ban cost."""
        chat = self._chat(chat_id)
        if chat_id in self._notices or self._stopping:
            return
        self._notices.add(chat_id)

        async def notice() -> None:
            loop = asyncio.get_running_loop()
            try:
                until = max(chat.messages.until, self._global_until)
                await asyncio.sleep(max(0.0, until - loop.time()))
                await send()
            except TelegramError as exc:
                log.warning("could not tell chat %s its answer was lost: %s", chat_id, exc)
            finally:
                self._notices.discard(chat_id)

        task = asyncio.get_running_loop().create_task(notice())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _chat_id(value: Any) -> int | None:
    """A call's chat_id as a number (None for none or a @username)."""
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _too_many(seconds: float) -> RetryAfter:
    """The 429 a call would get now, raised without asking Telegram (asking would lengthen it)."""
    with warnings.catch_warnings():  # PTB 22's constructor reads its own deprecated attribute
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        return RetryAfter(dt.timedelta(seconds=math.ceil(seconds)))


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _preview_key(method: str, data: dict[str, Any]) -> Any:
    """What a preview shows, for coalescing: the message it edits or the draft; None for a send."""
    if method == "sendmessagedraft":
        return ("draft", data.get("draft_id"))
    if method.startswith("edit"):
        return ("edit", data.get("message_id"), data.get("inline_message_id"))
    return None
