"""payments: users buy credit for the usage ledger with Telegram Stars; /buy, /refund, /paysupport.

The packages come from bot.toml (`[plugins.payments.packages.<id>]`): a number of Stars for an
amount of credit in the usage plugin's currency, once, or every 30 days as a subscription.
`/buy` lists them; a press sends the invoice (botcore.Invoice). Before the user pays, the
`pre_checkout` hook checks that the package is still offered at that price (access control
already ran). A payment is credited through the usage plugin's counters (`credit:u<user>:<charge
id>`, added with `limit=` its amount), so a payment is credited exactly once per
`telegram_payment_charge_id`: redelivered, handled again after a kill -9, or seen by several
instances on one store. An admin's `/refund <charge id>` gives the Stars back and takes the
credit back, once (what the user already spent of it is not owed); a subscription's refund also
stops its renewals. `/paysupport` is the command
Telegram requires of every bot that takes payments.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from typing import Any

from pydantic import Field, field_validator
from telegram import PreCheckoutQuery
from telegram.error import BadRequest

from botcore import (
    App,
    Button,
    Command,
    Handler,
    Invoice,
    StrictModel,
    Text,
    Turn,
    UserError,
    hookimpl,
)

log = logging.getLogger(__name__)

PREFIX = "payments:"
"""Every invoice payload of this plugin: "payments:<package id>:<credit>"."""
PAYMENTS = "payments"
"""Store records: charge id -> {user, package, stars, credit, date, refunded, subscription}."""
SUBSCRIPTIONS = "payments.subscriptions"
"""Store records: "<user>:<package>" -> {first, charges, expires, canceled}."""
LEDGER = "usage"
"""The usage plugin's counters namespace, where credit is granted (see plugins/usage)."""
SLACK = 1e-9


class Package(StrictModel):
    """[plugins.payments.packages.<id>]"""

    title: str = Field(min_length=1, max_length=32)
    description: str = Field(min_length=1, max_length=255)
    stars: int = Field(ge=1, le=10000)
    """The price in Telegram Stars (each period, for a subscription)."""
    credit: float = Field(gt=0)
    """Credit granted, in the usage plugin's currency (each period, for a subscription)."""
    subscription: bool = False
    """Renewed every 30 days (Telegram's only period) until the user or an admin cancels it."""


class Settings(StrictModel):
    """[plugins.payments]"""

    packages: dict[str, Package] = Field(default_factory=dict)
    currency: str = "$"
    """How credit amounts are shown: the usage plugin's `currency`."""
    support: str = ""
    """What /paysupport tells users besides the default text (e.g. "write to @operator")."""

    @field_validator("packages")
    @classmethod
    def _plain_ids(cls, value: dict[str, Package]) -> dict[str, Package]:
        for name in value:
            if not name or ":" in name or len(name) > 40:
                raise ValueError(f"package id {name!r}: 1-40 characters, no ':'")
        return value


@hookimpl
def settings_model() -> type[Settings]:
    return Settings


@hookimpl
def register_texts() -> dict[str, dict[str, str]]:
    return {
        "en": {
            "payments.buy_help": "Buy credit with Telegram Stars",
            "payments.refund_help": "Refund a payment: /refund <charge id>",
            "payments.support_help": "Help with a payment",
            "payments.choose": "What would you like to buy? Credit pays for use past your budget.",
            "payments.none": "Nothing is for sale right now.",
            "payments.package": "{title}: {stars} ⭐",
            "payments.package_sub": "{title}: {stars} ⭐ a month",
            "payments.gone": "This offer is no longer available. Please choose again: /buy",
            "payments.thanks": "Thank you! {credit} of credit was added. /usage shows it.",
            "payments.renewed": "Your subscription was renewed until {date}: "
            "{credit} of credit was added.",
            "payments.subscribed": "Your subscription {title}: paid until {date}{state}.",
            "payments.canceled": ", not renewed",
            "payments.refund_usage": "Usage: /refund <charge id> (the id is in the admins' "
            "payment notes and in /paysupport requests).",
            "payments.unknown_charge": "No payment {charge} is known here.",
            "payments.refunded": "Refunded {stars} ⭐ to user {user}; {credit} of credit taken "
            "back.",
            "payments.refunded_spent": "Refunded {stars} ⭐ to user {user}; {credit} of credit "
            "taken back ({spent} of it was already spent).",
            "payments.already_refunded": "Payment {charge} was already refunded.",
            "payments.refund_failed": "Telegram refused the refund: {error}",
            "payments.paid_note": "User {user} paid {stars} ⭐ for {package} (charge {charge}).",
            "payments.support": "Questions about a payment, or a refund? Write /paysupport "
            "followed by your message (and the payment's date), and the bot's admins will "
            "answer. Refunds are made in Telegram Stars.",
            "payments.support_sent": "Sent to the admins. They will answer you here.",
            "payments.support_note": "Payment support request from user {user}: {text}",
        },
        "ru": {
            "payments.buy_help": "Купить кредит за Telegram Stars",
            "payments.refund_help": "Вернуть платёж: /refund <id платежа>",
            "payments.support_help": "Помощь с оплатой",
            "payments.choose": "Что вы хотите купить? Кредит оплачивает расход сверх бюджета.",
            "payments.none": "Сейчас ничего не продаётся.",
            "payments.package": "{title}: {stars} ⭐",
            "payments.package_sub": "{title}: {stars} ⭐ в месяц",
            "payments.gone": "Это предложение больше недоступно. Выберите снова: /buy",
            "payments.thanks": "Спасибо! Добавлен кредит {credit}. Его видно в /usage.",
            "payments.renewed": "Подписка продлена до {date}: добавлен кредит {credit}.",
            "payments.subscribed": "Ваша подписка {title}: оплачена до {date}{state}.",
            "payments.canceled": ", не продлевается",
            "payments.refund_usage": "Пример: /refund <id платежа> (id есть в заметках админам "
            "об оплатах и в запросах /paysupport).",
            "payments.unknown_charge": "Платёж {charge} здесь неизвестен.",
            "payments.refunded": "Пользователю {user} возвращено {stars} ⭐; кредит {credit} "
            "списан.",
            "payments.refunded_spent": "Пользователю {user} возвращено {stars} ⭐; кредит "
            "{credit} списан ({spent} из него уже был потрачен).",
            "payments.already_refunded": "Платёж {charge} уже возвращён.",
            "payments.refund_failed": "Telegram не принял возврат: {error}",
            "payments.paid_note": "Пользователь {user} оплатил {stars} ⭐ за {package} "
            "(платёж {charge}).",
            "payments.support": "Вопрос об оплате или возврат? Напишите /paysupport и ваше "
            "сообщение (и дату платежа) — админы бота ответят. Возврат делается в Telegram Stars.",
            "payments.support_sent": "Отправлено админам. Они ответят вам здесь.",
            "payments.support_note": "Запрос о платеже от пользователя {user}: {text}",
        },
    }


@hookimpl
def register_commands(app: App) -> Sequence[Command]:
    return [
        Command("buy", buy, help=app.translations("payments.buy_help")),
        Command("paysupport", paysupport, help=app.translations("payments.support_help")),
        Command("refund", refund, help=app.translations("payments.refund_help"), admin=True),
    ]


@hookimpl
def register_handlers() -> Sequence[Handler]:
    return [Handler({"payment"}, paid, name="payments")]


def _payload(package_id: str, package: Package) -> str:
    return f"{PREFIX}{package_id}:{package.credit!r}"


def _offer(settings: Settings, payload: str) -> tuple[str, Package] | None:
    """The package an invoice payload is for, if it is still offered on the same terms."""
    package_id = payload[len(PREFIX) :].partition(":")[0]
    package = settings.packages.get(package_id)
    if package is None or _payload(package_id, package) != payload:
        return None
    return package_id, package


def _money(turn: Turn, amount: float) -> str:
    return f"{turn.app.settings(Settings).currency}{amount:,.2f}"


async def buy(turn: Turn) -> Text | str:
    """/buy: the packages as buttons, and the user's subscriptions."""
    settings = turn.app.settings(Settings)
    if not settings.packages:
        return turn.t("payments.none")
    rows = []
    for package_id, package in settings.packages.items():
        key = "payments.package_sub" if package.subscription else "payments.package"
        label = turn.t(key, title=package.title, stars=package.stars)
        rows.append([Button(label, package_id)])
    lines = [turn.t("payments.choose")]
    if turn.user_id is not None:
        lines += await _subscriptions(turn, settings, turn.user_id)
    return Text("\n".join(lines), buttons=rows)


async def _subscriptions(turn: Turn, settings: Settings, user_id: int) -> list[str]:
    """A line per subscription of the user still paid for: until when, and if it renews."""
    lines = []
    for package_id, package in settings.packages.items():
        if not package.subscription:
            continue
        found = await turn.app.store.get(SUBSCRIPTIONS, f"{user_id}:{package_id}")
        if not isinstance(found, dict) or found.get("expires", 0) < time.time():
            continue
        state = turn.t("payments.canceled") if found.get("canceled") else ""
        lines.append(
            turn.t(
                "payments.subscribed",
                title=package.title,
                date=_date(found["expires"]),
                state=state,
            )
        )
    return lines


def _date(unix: float) -> str:
    return f"{dt.datetime.fromtimestamp(unix, dt.UTC):%Y-%m-%d %H:%M} UTC"


@hookimpl
async def button_pressed(turn: Turn, data: str) -> Invoice | str:
    """A package chosen in /buy: its invoice, made from what bot.toml says now."""
    package = turn.app.settings(Settings).packages.get(data)
    if package is None:
        return turn.t("payments.gone")
    return Invoice(
        package.title,
        package.description,
        _payload(data, package),
        package.stars,
        subscription=package.subscription,
    )


@hookimpl
async def pre_checkout(turn: Turn, query: PreCheckoutQuery) -> str | None:
    """Let the user pay only for a package still offered on the invoice's terms and price."""
    if not query.invoice_payload.startswith(PREFIX):
        return None  # another plugin's invoice
    found = _offer(turn.app.settings(Settings), query.invoice_payload)
    if found is None or query.currency != "XTR" or query.total_amount != found[1].stars:
        log.info("pre-checkout of user %s refused: offer gone", query.from_user.id)
        return turn.t("payments.gone")
    return None


async def paid(turn: Turn) -> str | None:
    """A successful payment: credit it once per charge id, note it, follow its subscription."""
    payment = turn.message.successful_payment
    if payment is None or not payment.invoice_payload.startswith(PREFIX):
        return None
    user_id = turn.user_id
    if user_id is None:
        return None
    package_id, _, credit_text = payment.invoice_payload[len(PREFIX) :].partition(":")
    credit = float(credit_text)  # what the invoice promised, whatever bot.toml says now
    charge = payment.telegram_payment_charge_id
    store = turn.app.store
    record: dict[str, Any] = {
        "user": user_id,
        "package": package_id,
        "stars": payment.total_amount,
        "credit": credit,
        "date": time.time(),
    }
    if payment.is_recurring and payment.subscription_expiration_date is not None:
        record["subscription"] = f"{user_id}:{package_id}"
    # The record first: a refund needs it, and writing it again changes nothing that matters.
    known = await store.get(PAYMENTS, charge)
    if not isinstance(known, dict):
        await store.put(PAYMENTS, charge, record)
    # The credit, atomically once per charge: a second add passes the limit and is refused.
    granted = await store.add(
        LEDGER, f"credit:u{user_id}:{charge}", credit, limit=credit * (1 + SLACK)
    )
    if granted is None:
        log.info("payment %s of user %s: already credited", charge, user_id)
    else:
        log.info("payment %s of user %s: %s credited", charge, user_id, credit)
        await turn.app.tell_admins(
            turn.app.t(
                "payments.paid_note",
                user=user_id,
                stars=payment.total_amount,
                package=package_id,
                charge=charge,
            )
        )
    expires = payment.subscription_expiration_date
    if record.get("subscription") and expires is not None:
        await _follow(
            turn,
            record["subscription"],
            charge,
            expires.timestamp(),
            bool(payment.is_first_recurring),
        )
        if not payment.is_first_recurring:
            return turn.t(
                "payments.renewed", date=_date(expires.timestamp()), credit=_money(turn, credit)
            )
    return turn.t("payments.thanks", credit=_money(turn, credit))


async def _follow(turn: Turn, key: str, charge: str, expires: float, first: bool) -> None:
    """Keep a subscription's charges and the end of its paid period (a renewal extends it).
    A first payment after an earlier subscription (refunded, cancelled) starts a new one."""

    def extend(current: Any) -> dict[str, Any]:
        found = dict(current) if isinstance(current, dict) else {}
        if first and found.get("first") not in (None, charge):
            # Its own first charge and renewals: a refund must cancel this one, not the old.
            found = {"expires": found.get("expires")}
        charges = list(found.get("charges") or [])
        if charge not in charges:
            charges.append(charge)
        return {
            "first": found.get("first") or charge,
            "charges": charges,
            "expires": max(float(found.get("expires") or 0), expires),
            "canceled": bool(found.get("canceled")),
        }

    store = turn.app.store
    async with store.lock(f"{SUBSCRIPTIONS}:{key}", timeout=10):
        await store.put(SUBSCRIPTIONS, key, extend(await store.get(SUBSCRIPTIONS, key)))


async def refund(turn: Turn) -> str:
    """/refund <charge id> (admins): the Stars back to the user, the credit back from them,
    each once however often it is asked; a subscription is also no longer renewed."""
    charge = turn.args.strip()
    if not charge or " " in charge:
        raise UserError(turn.t("payments.refund_usage"))
    store = turn.app.store
    record = await store.get(PAYMENTS, charge)
    if not isinstance(record, dict):
        raise UserError(turn.t("payments.unknown_charge", charge=charge))
    user_id, credit = int(record["user"]), float(record["credit"])
    already = False
    try:
        await turn.app.refund_stars(user_id, charge)
    except BadRequest as exc:
        if "charge_already_refunded" not in exc.message.lower():
            raise UserError(turn.t("payments.refund_failed", error=exc.message)) from None
        already = True  # refunded before (a /refund cut off after Telegram's part, say)
    taken = await store.add(
        LEDGER, f"credit:u{user_id}:{charge}:refund", credit, limit=credit * (1 + SLACK)
    )
    spent = 0.0 if taken is None else await _forgive(turn, user_id, charge, credit)
    subscription = record.get("subscription")
    if isinstance(subscription, str):
        await _cancel(turn, user_id, subscription, charge)
    log.info("admin %s refunded payment %s of user %s", turn.user_id, charge, user_id)
    if already and taken is None:
        return turn.t("payments.already_refunded", charge=charge)
    if spent:
        return turn.t(
            "payments.refunded_spent",
            stars=record.get("stars"),
            user=user_id,
            credit=_money(turn, credit - spent),
            spent=_money(turn, spent),
        )
    return turn.t(
        "payments.refunded", stars=record.get("stars"), user=user_id, credit=_money(turn, credit)
    )


async def _forgive(turn: Turn, user_id: int, charge: str, credit: float) -> float:
    """The part of a refunded payment's credit the user had already spent: granted back (once
    per charge), so the refund leaves no debt that would silently eat their next purchase."""
    store = turn.app.store
    granted = sum(
        -value if key.endswith(":refund") else value
        for key, value in (await store.totals(LEDGER, f"credit:u{user_id}:")).items()
    )
    spent = (await store.totals(LEDGER, f"spent:u{user_id}")).get(f"spent:u{user_id}", 0.0)
    owed = min(round(spent - granted, 9), credit)  # what the credit (see plugins/usage) is below 0
    if owed <= 0:
        return 0.0
    key = f"credit:u{user_id}:{charge}:spent"
    await store.add(LEDGER, key, owed, limit=owed * (1 + SLACK))
    return owed


async def _cancel(turn: Turn, user_id: int, key: str, charge: str) -> None:
    """Stop renewing the subscription `charge` paid (editUserStarSubscription on its first
    charge)."""
    store = turn.app.store
    found = await store.get(SUBSCRIPTIONS, key)
    if not isinstance(found, dict) or found.get("canceled"):
        return
    if charge not in (found.get("charges") or []):
        # A payment of an earlier subscription (the user subscribed again since): that one.
        try:
            await turn.app.cancel_subscription(user_id, charge)
        except BadRequest as exc:
            log.warning("could not cancel the subscription of %s: %s", charge, exc.message)
        return
    try:
        await turn.app.cancel_subscription(user_id, str(found["first"]))
    except BadRequest as exc:
        log.warning("could not cancel subscription %s: %s", key, exc.message)
        return
    async with store.lock(f"{SUBSCRIPTIONS}:{key}", timeout=10):
        current = await store.get(SUBSCRIPTIONS, key)
        if isinstance(current, dict):
            await store.put(SUBSCRIPTIONS, key, {**current, "canceled": True})


async def paysupport(turn: Turn) -> str:
    """/paysupport: how to get help with a payment; with a message, it goes to the admins."""
    text = turn.args.strip()
    if text:
        await turn.app.tell_admins(
            turn.app.t("payments.support_note", user=turn.user_id, text=text)
        )
        return turn.t("payments.support_sent")
    extra = turn.app.settings(Settings).support
    return turn.t("payments.support") + (f"\n\n{extra}" if extra else "")
