"""usage: one ledger of what every plugin meters, priced, with daily and monthly budgets; /usage.

Every turn's `turn.usage` (chat tokens, images, voice seconds…) is added up in `app.store`
counters per user and for the whole bot, per day and per month, in counts and in money (priced
by `prices`). Budgets limit any of those measures. An expensive call first reserves its estimate
(`turn.reserve`, a `store.add(..., limit=)` that refuses atomically), so concurrent requests never
pass a budget; when the turn ends the reservation is replaced by what was really metered, so a
failed call costs only what it consumed.

Credit: money a user bought (the payments plugin) that pays for use past their own money budget
("cost" limits): a reservation that would pass one is drawn from the credit instead, and then the
whole turn is paid from it. Any plugin may grant credit through two `app.store` counters in the
"usage" namespace, in the ledger's currency: `credit:u<user>:<ref>` adds `amount` and
`credit:u<user>:<ref>:refund` takes it back, each added with `limit=amount`, so that adding it
again (a redelivered payment, a second refund, another instance) is refused: once per `ref`.
Credit is what those add up to, minus `spent:u<user>` (what budgets drew); /usage shows it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from botcore import App, Command, Store, StrictModel, Turn, UserError, hookimpl

log = logging.getLogger(__name__)
COUNTERS = "usage"
"""Store counters: "<window>:<who>:<measure>", e.g. "d:2026-11-24:u42:cost", "m:2026-11:all:image.images"."""
COST = "cost"
"""The measure that is the priced sum of all items; every other measure is an item name."""
RESERVED = "usage.reserved"
"""turn.extra key: {counter key: amount reserved during this turn}."""
DRAWN = "usage.credit"
"""turn.extra key: the credit drawn by this turn's reservations (the turn is paid from credit)."""
SLACK = 1e-9
"""Relative tolerance of a limit: float sums of prices must not refuse what exactly fits."""
KEEP_DAYS = {"daily": 40, "monthly": 400}
"""How long a window's counters are kept (for /usage and the operator), from their creation."""


class Limits(StrictModel):
    """Limits per window: {measure: limit}, where a measure is "cost" (money) or an item name."""

    daily: dict[str, float] | None = None
    monthly: dict[str, float] | None = None

    @field_validator("daily", "monthly")
    @classmethod
    def _not_negative(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for measure, limit in (value or {}).items():
            if limit < 0:
                raise ValueError(f"the limit for {measure!r} must not be negative")
        return value


class Settings(StrictModel):
    """[plugins.usage]"""

    prices: dict[str, float] = Field(default_factory=dict)
    """Price per metered item, e.g. {"chat.input_tokens" = 0.00000015}; unpriced items cost 0."""
    currency: str = "$"
    timezone: str = "UTC"
    """Where days and months begin (an IANA name such as "Europe/Moscow")."""
    user: Limits = Field(default_factory=Limits)
    """Every user's budget."""
    global_: Limits = Field(default_factory=Limits, alias="global")
    """The whole bot's budget."""
    users: dict[int, Limits] = Field(default_factory=dict)
    """Budgets of particular users by id; a window set here replaces `user`'s (/budget sets it)."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. UTC, Europe/Moscow)") from None
        return value


@dataclass(frozen=True)
class Window:
    """One day or one month: its counter prefix, when it resets, how long its counters live."""

    name: str
    key: str
    resets: dt.datetime

    @property
    def ttl(self) -> float:
        return KEEP_DAYS[self.name] * 86400.0


def windows(settings: Settings, now: dt.datetime | None = None) -> tuple[Window, ...]:
    """The current day and month in the configured time zone (or those of `now`)."""
    if now is not None:
        return _windows(now)
    # Worked out again only when the day ends: every turn asks, twice, and the time zone
    # arithmetic cost as much as all of the ledger's SQL (bench/).
    cached = _current.get(settings.timezone)
    if cached is None or time.time() >= cached[0]:
        found = _windows(dt.datetime.now(ZoneInfo(settings.timezone)))
        cached = _current[settings.timezone] = (found[0].resets.timestamp(), found)
    return cached[1]


_current: dict[str, tuple[float, tuple[Window, ...]]] = {}
"""Time zone -> (when its day ends, as a unix time; its current windows)."""


def _windows(now: dt.datetime) -> tuple[Window, ...]:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    day_end = (midnight + dt.timedelta(days=1, hours=1)).replace(hour=0)  # DST-proof
    month_start = midnight.replace(day=1)
    month_end = (month_start + dt.timedelta(days=32)).replace(day=1)
    return (
        Window("daily", f"d:{now:%Y-%m-%d}", day_end),
        Window("monthly", f"m:{now:%Y-%m}", month_end),
    )


def cost(
    settings: Settings, items: Mapping[str, float], prices: Mapping[str, float] | None = None
) -> float:
    """What these items cost: at the turn's own `prices` (a model's price per token) where it
    has one, else at the configured prices."""
    own = prices or {}
    return sum(
        amount * own.get(item, settings.prices.get(item, 0.0)) for item, amount in items.items()
    )


def user_limits(settings: Settings, user_id: int) -> Limits:
    """A user's effective budget: their own windows where set, else every user's."""
    own = settings.users.get(user_id)
    if own is None:
        return settings.user
    return Limits(
        daily=own.daily if own.daily is not None else settings.user.daily,
        monthly=own.monthly if own.monthly is not None else settings.user.monthly,
    )


def _who(user_id: int | None) -> str:
    return "all" if user_id is None else f"u{user_id}"


@hookimpl
def settings_model() -> type[Settings]:
    return Settings


@hookimpl
def register_texts() -> dict[str, dict[str, str]]:
    return {
        "en": {
            "usage.help": "Your usage and what is left of your budget",
            "usage.budget_help": "Set a budget: /budget <user id|global> <daily|monthly> "
            "<amount|off> [measure]",
            "usage.over_user_daily": "You have used up your daily budget. It resets at {time}.",
            "usage.over_user_monthly": "You have used up your monthly budget. It resets at {time}.",
            "usage.over_global_daily": "The bot has used up its daily budget. It resets at {time}.",
            "usage.over_global_monthly": "The bot has used up its monthly budget. "
            "It resets at {time}.",
            "usage.daily": "Today ({period})",
            "usage.monthly": "This month ({period})",
            "usage.nothing": "nothing yet",
            "usage.limit": "limit {measure}: {used} of {limit}, resets at {time}",
            "usage.everyone": "The whole bot",
            "usage.top": "Top users",
            "usage.user": "User {id}",
            "usage.budget_usage": "Usage: /budget 42 daily 0.5 (money), /budget 42 daily 10 "
            "image.images (a count), /budget 42 daily off, /budget 42 reset, /budget global "
            "monthly 100.",
            "usage.budget_set": "Budget of {who}, {window}: {limits}.",
            "usage.budget_reset": "{who} has the default budget again.",
            "usage.no_limits": "no limits",
            "usage.credit": "Credit: {left} left of {granted} bought",
        },
        "ru": {
            "usage.help": "Ваш расход и остаток бюджета",
            "usage.budget_help": "Задать бюджет: /budget <id пользователя|global> "
            "<daily|monthly> <сумма|off> [мера]",
            "usage.over_user_daily": "Ваш дневной бюджет исчерпан. Он обновится {time}.",
            "usage.over_user_monthly": "Ваш месячный бюджет исчерпан. Он обновится {time}.",
            "usage.over_global_daily": "Дневной бюджет бота исчерпан. Он обновится {time}.",
            "usage.over_global_monthly": "Месячный бюджет бота исчерпан. Он обновится {time}.",
            "usage.daily": "Сегодня ({period})",
            "usage.monthly": "В этом месяце ({period})",
            "usage.nothing": "пока ничего",
            "usage.limit": "лимит {measure}: {used} из {limit}, обновится {time}",
            "usage.everyone": "Весь бот",
            "usage.top": "Больше всех",
            "usage.user": "Пользователь {id}",
            "usage.budget_usage": "Примеры: /budget 42 daily 0.5 (деньги), /budget 42 daily 10 "
            "image.images (штуки), /budget 42 daily off, /budget 42 reset, /budget global "
            "monthly 100.",
            "usage.budget_set": "Бюджет {who}, {window}: {limits}.",
            "usage.budget_reset": "{who}: снова бюджет по умолчанию.",
            "usage.no_limits": "без ограничений",
            "usage.credit": "Кредит: осталось {left} из {granted} купленных",
        },
    }


@hookimpl
def register_commands(app: App) -> Sequence[Command]:
    return [
        Command("usage", show_usage, help=app.translations("usage.help")),
        Command("budget", budget, help=app.translations("usage.budget_help"), admin=True),
    ]


@hookimpl
async def reserve_usage(turn: Turn, items: Mapping[str, float]) -> None:
    """Add the estimate to every limited counter, all or none; refuse past a limit."""
    settings = turn.app.settings(Settings)
    amounts = {**items, COST: cost(settings, items, turn.prices)}
    scopes: list[tuple[str, int | None, Limits]] = [("global", None, settings.global_)]
    if turn.user_id is not None:
        scopes.insert(0, ("user", turn.user_id, user_limits(settings, turn.user_id)))
    store = turn.app.store
    done: list[tuple[str, float]] = []
    drawn = 0.0
    for scope, user_id, limits in scopes:
        for window in windows(settings):
            for measure, limit in (getattr(limits, window.name) or {}).items():
                amount = amounts.get(measure, 0.0)
                if amount <= 0 or (drawn and scope == "user" and measure == COST):
                    continue  # paid from credit: no window of the user's money budget applies
                key = f"{window.key}:{_who(user_id)}:{measure}"
                slack = SLACK * max(1.0, limit)  # 0.1 + 0.1 + 0.1 must fit in 0.3
                total = await store.add(COUNTERS, key, amount, limit=limit + slack, ttl=window.ttl)
                over_own = total is None and scope == "user" and measure == COST
                if over_own and user_id is not None and await _draw(store, user_id, amount):
                    drawn = amount
                    continue
                if total is None:
                    if drawn:  # the credit drawn for the user goes back too
                        await store.add(COUNTERS, f"spent:u{turn.user_id}", -drawn)
                    for undo_key, undo in done:
                        await store.add(COUNTERS, undo_key, -undo)
                    log.info(
                        "budget: refused user %s (update %s): %s %s %s limit %s",
                        turn.user_id,
                        turn.update_id,
                        scope,
                        window.name,
                        measure,
                        limit,
                    )
                    resets = f"{window.resets:%Y-%m-%d %H:%M} {window.resets.tzname()}"
                    raise UserError(turn.t(f"usage.over_{scope}_{window.name}", time=resets))
                done.append((key, amount))
    reserved: dict[str, float] = turn.extra.setdefault(RESERVED, {})
    for key, amount in done:
        reserved[key] = reserved.get(key, 0.0) + amount
    if drawn:
        turn.extra[DRAWN] = turn.extra.get(DRAWN, 0.0) + drawn


async def credit(store: Store, user_id: int) -> tuple[float, float]:
    """A user's credit: (what is left, what was granted in all, refunds deducted)."""
    granted = 0.0
    for key, value in (await store.totals(COUNTERS, f"credit:u{user_id}:")).items():
        granted += -value if key.endswith(":refund") else value
    spent = (await store.totals(COUNTERS, f"spent:u{user_id}")).get(f"spent:u{user_id}", 0.0)
    return granted - spent, granted


async def _draw(store: Store, user_id: int, amount: float) -> bool:
    """Take `amount` from the user's credit, atomically; False if there is not enough."""
    _, granted = await credit(store, user_id)
    if granted <= 0:
        return False
    slack = SLACK * max(1.0, granted)
    return await store.add(COUNTERS, f"spent:u{user_id}", amount, limit=granted + slack) is not None


@hookimpl
async def turn_end(turn: Turn) -> None:
    """Record what the turn metered and give back what it reserved: one signed add per counter,
    all in one write."""
    reserved: dict[str, float] = turn.extra.pop(RESERVED, {})
    drawn: float = turn.extra.pop(DRAWN, 0.0)
    if not turn.usage and not reserved and not drawn:
        return
    settings = turn.app.settings(Settings)
    amounts = {**turn.usage, COST: cost(settings, turn.usage, turn.prices)} if turn.usage else {}
    changes: dict[str, tuple[float, float | None]] = {
        key: (-amount, None) for key, amount in reserved.items()
    }
    if drawn and turn.user_id is not None:  # a turn past the budget is paid from credit in full
        changes[f"spent:u{turn.user_id}"] = (amounts.get(COST, 0.0) - drawn, None)
    whos = ["all"] if turn.user_id is None else ["all", _who(turn.user_id)]
    for window in windows(settings):
        for who in whos:
            for measure, amount in amounts.items():
                key = f"{window.key}:{who}:{measure}"
                change, _ = changes.get(key, (0.0, None))
                changes[key] = (change + amount, window.ttl)
    await turn.app.store.add_many(
        COUNTERS, [(key, change, ttl) for key, (change, ttl) in changes.items() if change]
    )
    if turn.usage:
        log.debug(
            "usage: user %s (update %s): %s, cost %s",
            turn.user_id,
            turn.update_id,
            ", ".join(f"{item} {amount:g}" for item, amount in sorted(turn.usage.items())),
            f"{amounts[COST]:.6f}",
        )


def _number(value: float) -> str:
    value = round(value, 6) + 0.0
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def _money(settings: Settings, value: float) -> str:
    value = round(value, 6) + 0.0  # float dust of reservations given back, and -0.0, show as 0
    if 0 < abs(value) < 0.01:
        return f"{settings.currency}{value:.6f}".rstrip("0")
    return f"{settings.currency}{value:,.2f}"


def _measure(settings: Settings, measure: str, value: float) -> str:
    return _money(settings, value) if measure == COST else _number(value)


async def _report(turn: Turn, user_id: int | None, limits: Limits | None) -> list[str]:
    """Lines on one user's (or the whole bot's) use today and this month, and their limits."""
    settings = turn.app.settings(Settings)
    lines: list[str] = []
    for window in windows(settings):
        prefix = f"{window.key}:{_who(user_id)}:"
        used = {
            k[len(prefix) :]: v for k, v in (await turn.app.store.totals(COUNTERS, prefix)).items()
        }
        period = window.key.split(":", 1)[1]
        lines.append(turn.t(f"usage.{window.name}", period=period) + ":")
        items = sorted((m, v) for m, v in used.items() if m != COST and v)
        if not items:
            lines.append("  " + turn.t("usage.nothing"))
        for item, value in items:
            lines.append(f"  {item}: {_number(value)}")
        if items or settings.prices:
            lines.append(f"  {COST}: {_money(settings, used.get(COST, 0.0))}")
        resets = f"{window.resets:%Y-%m-%d %H:%M} {window.resets.tzname()}"
        for measure, limit in ((getattr(limits, window.name) if limits else None) or {}).items():
            lines.append(
                "  "
                + turn.t(
                    "usage.limit",
                    measure=measure,
                    used=_measure(settings, measure, used.get(measure, 0.0)),
                    limit=_measure(settings, measure, limit),
                    time=resets,
                )
            )
    return lines


async def show_usage(turn: Turn) -> str:
    """/usage: your use and budget; admins also see the whole bot and its top users, and
    `/usage <user id>` shows one user."""
    settings = turn.app.settings(Settings)
    target = turn.user_id
    if turn.is_admin and turn.args.strip().lstrip("-").isdigit():
        target = int(turn.args.strip())
    if target is None:
        return turn.t("usage.nothing")
    lines = await _report(turn, target, user_limits(settings, target))
    left, granted = await credit(turn.app.store, target)
    if granted or left:
        lines.append(
            turn.t("usage.credit", left=_money(settings, left), granted=_money(settings, granted))
        )
    if turn.is_admin and target == turn.user_id:
        lines += ["", turn.t("usage.everyone") + ":"]
        lines += await _report(turn, None, settings.global_)
        lines += ["", turn.t("usage.top") + ":"]
        for window in windows(settings):
            lines.append(f"  {turn.t(f'usage.{window.name}', period=window.key.split(':', 1)[1])}:")
            lines += [f"    {line}" for line in await _top(turn, settings, window)]
    return "\n".join(lines)


async def _top(turn: Turn, settings: Settings, window: Window, count: int = 10) -> list[str]:
    """The users who spent most in a window (by cost, else by total items)."""
    totals = await turn.app.store.totals(COUNTERS, f"{window.key}:u")
    spent: dict[str, dict[str, float]] = {}
    for key, value in totals.items():
        who, _, measure = key[len(window.key) + 2 :].partition(":")
        spent.setdefault(who, {})[measure] = value
    ranked = sorted(
        spent.items(),
        key=lambda kv: (kv[1].get(COST, 0.0), sum(v for m, v in kv[1].items() if m != COST)),
        reverse=True,
    )
    lines = []
    for who, measures in ranked[:count]:
        items = ", ".join(f"{m} {_number(v)}" for m, v in sorted(measures.items()) if m != COST)
        money = _money(settings, measures.get(COST, 0.0))
        lines.append(f"{turn.t('usage.user', id=who)}: {money} ({items})")
    return lines or [turn.t("usage.nothing")]


async def budget(turn: Turn) -> str:
    """/budget <user id|global> <daily|monthly> <amount|off> [measure], or /budget <id> reset."""
    words = turn.args.split()
    if not words or not (words[0] == "global" or words[0].lstrip("-").isdigit()):
        raise UserError(turn.t("usage.budget_usage"))
    who_word = words[0]
    is_global = who_word == "global"
    who = turn.t("usage.everyone") if is_global else turn.t("usage.user", id=who_word)
    base = "plugins.usage.global" if is_global else f"plugins.usage.users.{int(who_word)}"
    if len(words) == 2 and words[1] == "reset" and not is_global:
        await turn.app.override(base, None)
        log.info("admin %s reset the budget of user %s", turn.user_id, who_word)
        return turn.t("usage.budget_reset", who=who)
    if len(words) not in (3, 4) or words[1] not in ("daily", "monthly"):
        raise UserError(turn.t("usage.budget_usage"))
    window, amount_word = words[1], words[2]
    measure = words[3] if len(words) == 4 else COST
    limit: float | None = None
    if amount_word != "off":
        try:
            limit = float(amount_word)
        except ValueError:
            raise UserError(turn.t("usage.budget_usage")) from None
        if not math.isfinite(limit) or limit < 0:
            raise UserError(turn.t("usage.budget_usage"))

    def change(raw: Any) -> dict[str, float]:
        """The window's limits as stored (else bot.toml's) with this measure set or dropped."""
        if isinstance(raw, dict):
            limits = dict(raw)
        else:  # a user's own window starts as a copy of every user's: bot.toml's, never changed
            # in chat (no command sets plugins.usage.user), so this process's copy is current
            default = None if is_global else getattr(turn.app.settings(Settings).user, window)
            limits = dict(default or {})
        limits.pop(measure, None)
        return limits if limit is None else {**limits, measure: limit}

    await turn.app.override(f"{base}.{window}", change)
    log.info(
        "admin %s set the %s budget of %s: %s %s",
        turn.user_id,
        window,
        who_word,
        measure,
        amount_word,
    )
    fresh = turn.app.settings(Settings)
    limits_now = fresh.global_ if is_global else user_limits(fresh, int(who_word))
    shown = getattr(limits_now, window) or {}
    text = ", ".join(f"{m} {_measure(fresh, m, v)}" for m, v in shown.items())
    return turn.t(
        "usage.budget_set", who=who, window=window, limits=text or turn.t("usage.no_limits")
    )
