"""Telegram's flood limits as the fake Telegram enforces them: budgets, 429s and violations.

What Telegram documents (Bot FAQ, "My bot is hitting limits, how do I avoid this?"): in one chat
avoid more than one message per second ("we may allow short bursts that go over this limit"),
no more than 20 messages per minute in the same group, about 30 messages per second overall
(sendMessage & co. with ``allow_paid_broadcast`` go up to 1000 per second for a fee). Past a
limit the Bot API answers 429 "Too Many Requests: retry after N" with ``parameters.retry_after``.

The model (the exact algorithm is not public; this one is documented so tests can reason):

* one chat: a token bucket, ``per_chat`` tokens a second, holding at most ``per_chat_burst``;
* one group, supergroup or channel, also: at most ``per_group_minute`` in any rolling 60 s;
* everything: a token bucket of ``global_per_second``, holding one second's worth;
* ``typing``: sendChatAction and sendMessageDraft (a draft is a typing action underneath, see
  core.telegram.org/api/bots/ai) have their own per-chat budget, rolling windows of
  (seconds, calls), by default 20 per 5 s and 40 per 30 s, as reported by bots that hit it.

A refused call consumes nothing and opens a retry window of ``retry_after`` whole seconds (the
wait the budget needs, at least 1) on its scope: the chat (its typing budget apart) or, for the
global budget, every chat. A counted call made while its window is open is answered 429 again,
counted as a *violation*, and lengthens that window by ``violation_penalty`` seconds.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

__all__ = [
    "NO_LIMITS",
    "TELEGRAM_LIMITS",
    "Admission",
    "FloodControl",
    "FloodEvent",
    "FloodLimits",
    "Kind",
    "limits_from_json",
]

Scope = Literal["chat", "group", "global", "paid", "typing"]
Kind = Literal["message", "typing"]
_GLOBAL = "global"


@dataclass(frozen=True)
class FloodLimits:
    """Which budgets the fake enforces; ``None`` switches one off (``FloodLimits()``: none)."""

    per_chat: float | None = None
    """Messages a second in one chat, once its burst is spent (Telegram: 1)."""
    per_chat_burst: int = 3
    """Messages one chat may take at once before ``per_chat`` paces it (the "short bursts")."""
    per_group_minute: int | None = None
    """Messages in any rolling minute in one group, supergroup or channel (Telegram: 20)."""
    global_per_second: float | None = None
    """Messages a second over all chats, a bucket holding one second's worth (Telegram: ~30)."""
    paid_per_second: float | None = None
    """The global budget of calls with ``allow_paid_broadcast`` instead (Telegram: 1000)."""
    typing: tuple[tuple[float, int], ...] | None = None
    """Per chat (seconds, calls) windows shared by sendChatAction and sendMessageDraft."""
    violation_penalty: float = 1.0
    """Seconds a call made inside an open retry window adds to that window."""

    @property
    def enabled(self) -> bool:
        """True if any budget is enforced."""
        return any(
            value is not None
            for value in (
                self.per_chat,
                self.per_group_minute,
                self.global_per_second,
                self.paid_per_second,
                self.typing,
            )
        )


NO_LIMITS = FloodLimits()
"""Any rate goes (``FakeTelegram()``'s default; the kit's ``telegram`` fixture enforces
``TELEGRAM_LIMITS`` unless told otherwise)."""

TELEGRAM_LIMITS = FloodLimits(
    per_chat=1.0,
    per_chat_burst=3,
    per_group_minute=20,
    global_per_second=30.0,
    paid_per_second=1000.0,
    typing=((5.0, 20), (30.0, 40)),
)
"""Telegram's limits as documented in the Bot FAQ (typing: as reported, see the module doc)."""


def limits_from_json(body: dict[str, Any]) -> FloodLimits:
    """FloodLimits from JSON: ``{"preset": "telegram" | "off", **fields}`` (no preset: off)."""
    preset = body.get("preset", "off")
    if preset not in ("telegram", "off"):
        raise ValueError(f"unknown flood limits preset {preset!r} (telegram, off)")
    base = TELEGRAM_LIMITS if preset == "telegram" else NO_LIMITS
    known = {f.name for f in fields(FloodLimits)}
    changes = {k: v for k, v in body.items() if k != "preset"}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown flood limits fields {unknown} (known: {sorted(known)})")
    if changes.get("typing") is not None:
        changes["typing"] = tuple((float(s), int(n)) for s, n in changes["typing"])
    return replace(base, **changes)


@dataclass(frozen=True)
class FloodEvent:
    """One 429 the fake gave for flood control."""

    time: float  # the flood clock's time
    method: str
    chat_id: int | None  # None for inline messages (no chat)
    scope: Scope  # the budget that refused, or whose window was still open
    retry_after: int
    violation: bool  # made while that window was open


@dataclass
class _Bucket:
    tokens: float
    stamp: float

    def refill(self, now: float, rate: float, burst: float) -> None:
        self.tokens = min(burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now

    def wait(self, now: float, rate: float, burst: float) -> float:
        """Seconds until a token is there (0: now)."""
        self.refill(now, rate, burst)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / rate


def _window_wait(times: deque[float], now: float, period: float, count: int) -> float:
    """Seconds until a rolling window of ``period`` holding ``times`` has room for one more."""
    while times and times[0] <= now - period:
        times.popleft()
    return 0.0 if len(times) < count else times[-count] + period - now


@dataclass
class Admission:
    """What one admitted call took, so that a call the API then refuses can give it back."""

    buckets: list[_Bucket] = field(default_factory=list)
    windows: list[tuple[deque[float], float]] = field(default_factory=list)


class FloodControl:
    """The budgets, open retry windows and counts of one fake Telegram.

    ``violations`` and ``rejections`` are totals; ``chat_violations`` and ``chat_rejections`` count
    them per chat (the chat of the refused call); ``events`` has every 429 in order.
    """

    def __init__(
        self, limits: FloodLimits | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.limits = limits or NO_LIMITS
        self.clock: Callable[[], float] = clock or time.monotonic
        """The time source; a test may replace it to step time by hand."""
        self.events: list[FloodEvent] = []
        self.chat_violations: Counter[int | None] = Counter()
        self.chat_rejections: Counter[int | None] = Counter()
        self._buckets: dict[Any, _Bucket] = {}
        self._windows: dict[Any, deque[float]] = {}
        self._open_until: dict[Any, float] = {}

    @property
    def violations(self) -> int:
        """Calls made while a retry window they fall under was still open."""
        return sum(self.chat_violations.values())

    @property
    def rejections(self) -> int:
        """All 429s flood control gave (violations included)."""
        return sum(self.chat_rejections.values())

    def reset(self) -> None:
        """Forget counts, budgets spent and open windows (the limits stay)."""
        self.events.clear()
        self.chat_violations.clear()
        self.chat_rejections.clear()
        self._buckets.clear()
        self._windows.clear()
        self._open_until.clear()

    def retry_window(self, chat_id: int | None = None, kind: Kind = "message") -> float:
        """Seconds left in the open retry window of a chat (None: the global one); 0 if none."""
        key = _GLOBAL if chat_id is None else (chat_id, kind)
        return max(0.0, self._open_until.get(key, 0.0) - self.clock())

    # ------------------------------------------------------------------ admission

    def admit(
        self,
        method: str,
        chat_id: int | None,
        *,
        kind: Kind = "message",
        group: bool = False,
        paid: bool = False,
    ) -> tuple[FloodEvent | None, Admission]:
        """Take one call's budget: (None, what it took) if it may go, else (the 429, nothing)."""
        limits = self.limits
        taken = Admission()
        if not limits.enabled:
            return None, taken
        now = self.clock()
        chat_key = None if chat_id is None else (chat_id, kind)
        # Open windows first: a call inside one is a violation, whatever the budgets say now.
        open_keys: list[tuple[Any, Scope]] = []
        if kind == "message" and not paid:
            open_keys.append((_GLOBAL, "global"))
        if chat_key is not None:
            open_keys.append((chat_key, "typing" if kind == "typing" else "chat"))
        for key, scope in open_keys:
            until = self._open_until.get(key, 0.0)
            if now < until:
                until += limits.violation_penalty
                self._open_until[key] = until
                return self._refuse(now, method, chat_id, scope, until - now, True), taken
        # Then every budget that applies; all must have room, and only then is anything taken.
        needs: list[tuple[float, Any, Scope]] = []  # (wait, window key, scope)
        buckets: list[_Bucket] = []
        windows: list[deque[float]] = []

        def bucket(key: Any, rate: float, burst: float, scope: Scope, window_key: Any) -> None:
            state = self._buckets.setdefault(key, _Bucket(burst, now))
            wait = state.wait(now, rate, burst)
            if wait > 0:
                needs.append((wait, window_key, scope))
            buckets.append(state)

        def rolling(key: Any, period: float, count: int, scope: Scope, window_key: Any) -> None:
            times = self._windows.setdefault(key, deque())
            wait = _window_wait(times, now, period, count)
            if wait > 0:
                needs.append((wait, window_key, scope))
            windows.append(times)

        if kind == "typing":
            if chat_key is not None and limits.typing:
                for period, count in limits.typing:
                    rolling((chat_key, period), period, count, "typing", chat_key)
        else:
            if chat_key is not None and limits.per_chat is not None:
                burst = max(1.0, float(limits.per_chat_burst))
                bucket((chat_key, "bucket"), limits.per_chat, burst, "chat", chat_key)
            if chat_key is not None and group and limits.per_group_minute is not None:
                rolling((chat_key, 60.0), 60.0, limits.per_group_minute, "group", chat_key)
            if paid and limits.paid_per_second is not None:
                rate = limits.paid_per_second
                bucket(("paid", "bucket"), rate, max(1.0, rate), "paid", "paid")
            elif not paid and limits.global_per_second is not None:
                rate = limits.global_per_second
                bucket((_GLOBAL, "bucket"), rate, max(1.0, rate), "global", _GLOBAL)
        if needs:
            wait, window_key, scope = max(needs, key=lambda need: need[0])
            retry_after = max(1, math.ceil(wait - 1e-9))
            self._open_until[window_key] = max(
                self._open_until.get(window_key, 0.0), now + retry_after
            )
            return self._refuse(now, method, chat_id, scope, retry_after, False), taken
        for state in buckets:
            state.tokens -= 1
            taken.buckets.append(state)
        for times in windows:
            times.append(now)
            taken.windows.append((times, now))
        return None, taken

    @staticmethod
    def give_back(taken: Admission) -> None:
        """Return what an admitted call took: the API refused it for another reason (a 400)."""
        for state in taken.buckets:
            state.tokens += 1
        for times, stamp in taken.windows:
            with contextlib.suppress(ValueError):
                times.remove(stamp)

    def _refuse(
        self,
        now: float,
        method: str,
        chat_id: int | None,
        scope: Scope,
        wait: float,
        violation: bool,
    ) -> FloodEvent:
        event = FloodEvent(now, method, chat_id, scope, max(1, math.ceil(wait - 1e-9)), violation)
        self.events.append(event)
        self.chat_rejections[chat_id] += 1
        if violation:
            self.chat_violations[chat_id] += 1
        return event
