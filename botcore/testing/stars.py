"""Telegram Stars in the fake Telegram: invoices, a user paying, refunds and subscriptions.

What the Bot API documents (Payments, Telegram Stars): an invoice in ``XTR`` has an empty
``provider_token`` and exactly one price, a whole number of Stars; a subscription is an invoice
link with ``subscription_period`` 2592000 (30 days, the only period allowed). A user who pays
sends the bot a ``pre_checkout_query``, which must be answered with ``answerPreCheckoutQuery``
within 10 seconds, else the payment is cancelled; after ``ok`` the user is charged and the bot
gets a service message with ``successful_payment``, whose ``telegram_payment_charge_id`` is unique
(subscriptions: ``subscription_expiration_date``, ``is_recurring``, ``is_first_recurring``).
Each renewal is a new payment (a new charge id, ``is_recurring``). A user who cancels a
subscription sends the bot nothing: it simply is not renewed. Error descriptions are Telegram's
where known (CHARGE_ALREADY_REFUNDED); the others are best effort, as noted below.

Reached as ``FakeTelegram.stars``.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botcore.testing.fake_telegram import ApiCall, BotMessage, FakeTelegram

JSONDict = dict[str, Any]

SUBSCRIPTION_PERIOD = 2592000
"""The only `subscription_period` Telegram accepts: 30 days, in seconds."""
CHECKOUT_TIMEOUT = 10.0
"""Seconds Telegram waits for answerPreCheckoutQuery before it cancels the payment."""
MAX_STARS = 10000
"""The most Stars one invoice (or one subscription period) may ask for."""


@dataclass
class Invoice:
    """An invoice the bot made: a message (sendInvoice) or a link (createInvoiceLink)."""

    title: str
    description: str
    payload: str
    currency: str
    amount: int
    """The total, in Stars."""
    subscription_period: int | None = None
    link: str | None = None
    message: BotMessage | None = None


@dataclass
class StarPayment:
    """A payment a user made: what the bot got as `successful_payment`, and its fate."""

    charge_id: str
    user_id: int
    invoice: Invoice
    date: int
    successful_payment: JSONDict
    """The object sent to the bot, as sent."""
    refunded: bool = False
    subscription: Subscription | None = None


@dataclass
class Subscription:
    """A user's subscription: renewed every period until the user or the bot cancels it."""

    user_id: int
    invoice: Invoice
    first_charge_id: str
    expires: int
    """Unix time the current period ends (`subscription_expiration_date`)."""
    language_code: str | None = "en"
    first_name: str = "Test"
    charges: list[str] = field(default_factory=list)
    canceled_by_user: bool = False
    canceled_by_bot: bool = False
    """Set by `editUserStarSubscription(is_canceled=True)`; undone by is_canceled=False."""

    @property
    def canceled(self) -> bool:
        """Not renewed at the end of the current period."""
        return self.canceled_by_user or self.canceled_by_bot


@dataclass
class Checkout:
    """How a user's try to pay ended: paid (`payment`), refused by the bot (`error_message`,
    what Telegram showed the user), or timed out (the bot never answered in 10 s)."""

    ok: bool
    query_id: str
    error_message: str | None = None
    timed_out: bool = False
    payment: StarPayment | None = None


class Stars:
    """The Stars side of the fake: the bot's payment methods, and a user who pays."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake
        self.invoices: list[Invoice] = []
        """Every invoice the bot sent or made a link for, in order."""
        self.payments: dict[str, StarPayment] = {}
        """Every payment by telegram_payment_charge_id, renewals included."""
        self.subscriptions: dict[str, Subscription] = {}
        """By the charge id of their first payment."""
        self.checkout_answers: list[JSONDict] = []
        """The answerPreCheckoutQuery calls that were accepted, in order."""
        self.refunds: list[tuple[str, int]] = []
        """(charge id, date) of every refund, in order."""
        self._links: dict[str, Invoice] = {}
        self._open: dict[str, JSONDict] = {}
        """Pre-checkout queries waiting for their answer, by id."""
        self._answers: dict[str, JSONDict] = {}
        self._counter = itertools.count(1)

    def handlers(self) -> dict[str, Any]:
        """The Bot API methods this class answers (lower-cased names)."""
        return {
            "sendinvoice": self._send_invoice,
            "createinvoicelink": self._create_invoice_link,
            "answerprecheckoutquery": self._answer_pre_checkout_query,
            "refundstarpayment": self._refund_star_payment,
            "edituserstarsubscription": self._edit_user_star_subscription,
            "getstartransactions": self._get_star_transactions,
        }

    # ------------------------------------------------------------------ the user side

    def invoice(self, which: BotMessage | str | None = None) -> Invoice:
        """The invoice of a bot message, of a link, or (None) the last one the bot made."""
        if which is None:
            if not self.invoices:
                raise AssertionError("the bot made no invoice")
            return self.invoices[-1]
        if isinstance(which, str):
            found = self._links.get(which)
            if found is None:
                raise AssertionError(f"no invoice link {which!r}")
            return found
        for invoice in self.invoices:
            if invoice.message is which:
                return invoice
        raise AssertionError(f"message {which.message_id} is no invoice")

    async def pay(
        self,
        which: BotMessage | str | None = None,
        *,
        user_id: int = 42,
        language_code: str | None = "en",
        first_name: str = "Test",
        timeout: float = CHECKOUT_TIMEOUT,  # noqa: ASYNC109
    ) -> Checkout:
        """A user pays an invoice (a bot message, a link, or the last one): the bot gets a
        `pre_checkout_query`; if it answers ok within `timeout` (Telegram's 10 s), the user is
        charged and the bot gets the `successful_payment` message in the invoice's chat (a
        link's: the user's private chat)."""
        invoice = self.invoice(which)
        query_id = f"{next(self._counter)}{secrets.randbelow(10**9)}"
        query = {
            "id": query_id,
            "from": self.fake._user(user_id, first_name, None, language_code),
            "currency": invoice.currency,
            "total_amount": invoice.amount,
            "invoice_payload": invoice.payload,
        }
        self._open[query_id] = query
        await self.fake.send_update({"pre_checkout_query": query})
        try:
            await self.fake.wait_for(lambda: query_id in self._answers, timeout=timeout)
        except AssertionError:
            self._open.pop(query_id, None)  # too late now: Telegram cancelled the payment
            return Checkout(ok=False, query_id=query_id, timed_out=True)
        answer = self._answers[query_id]
        if not answer.get("ok"):
            return Checkout(False, query_id, error_message=str(answer.get("error_message")))
        subscription: Subscription | None = None
        if invoice.subscription_period:
            now = int(time.time())
            subscription = Subscription(
                user_id,
                invoice,
                "",
                now + invoice.subscription_period,
                language_code=language_code,
                first_name=first_name,
            )
        payment = await self._charge(
            invoice, user_id, language_code, first_name, subscription, first=True
        )
        return Checkout(True, query_id, payment=payment)

    async def renew(self, charge_id: str) -> StarPayment | None:
        """A subscription's period ends: Telegram charges the user again and the bot gets a new
        `successful_payment` (`is_recurring`, a new charge id, a later expiration), unless the
        user or the bot cancelled it (then None: nothing is sent). `charge_id`: any of its."""
        subscription = self._subscription(charge_id)
        if subscription is None:
            raise AssertionError(f"{charge_id!r} is no subscription's payment")
        if subscription.canceled:
            return None
        return await self._charge(
            subscription.invoice,
            subscription.user_id,
            subscription.language_code,
            subscription.first_name,
            subscription,
            first=False,
        )

    def cancel(self, charge_id: str) -> None:
        """The user cancels a subscription in Telegram: it is not renewed. The bot is told
        nothing (the Bot API has no update for it)."""
        subscription = self._subscription(charge_id)
        if subscription is None:
            raise AssertionError(f"{charge_id!r} is no subscription's payment")
        subscription.canceled_by_user = True

    def _subscription(self, charge_id: str) -> Subscription | None:
        payment = self.payments.get(charge_id)
        return payment.subscription if payment is not None else None

    async def _charge(
        self,
        invoice: Invoice,
        user_id: int,
        language_code: str | None,
        first_name: str,
        subscription: Subscription | None,
        *,
        first: bool,
    ) -> StarPayment:
        charge_id = f"stxfake{next(self._counter)}{secrets.token_hex(6)}"
        paid: JSONDict = {
            "currency": invoice.currency,
            "total_amount": invoice.amount,
            "invoice_payload": invoice.payload,
            "telegram_payment_charge_id": charge_id,
            "provider_payment_charge_id": "",
        }
        if subscription is not None:
            if first:
                subscription.first_charge_id = charge_id
                self.subscriptions[charge_id] = subscription
                paid["is_first_recurring"] = True
            else:
                subscription.expires += invoice.subscription_period or SUBSCRIPTION_PERIOD
            subscription.charges.append(charge_id)
            paid["subscription_expiration_date"] = subscription.expires
            paid["is_recurring"] = True
        # The service message comes in the invoice's chat; a link's payment in the user's own.
        chat_id = invoice.message.chat_id if invoice.message is not None else None
        chat_type = self.fake._chats[chat_id]["type"] if chat_id is not None else "private"
        message = self.fake._user_message(
            user_id=user_id,
            chat_id=chat_id,
            chat_type=chat_type,
            language_code=language_code,
            first_name=first_name,
        )
        message["successful_payment"] = paid
        payment = StarPayment(
            charge_id, user_id, invoice, message["date"], paid, subscription=subscription
        )
        self.payments[charge_id] = payment
        await self.fake._push_message(message)
        return payment

    # ------------------------------------------------------------------ the bot side

    def _check_invoice(self, p: JSONDict, *, link: bool) -> Invoice:
        from botcore.testing.fake_telegram import _bad

        title, description = str(p.get("title") or ""), str(p.get("description") or "")
        payload = str(p.get("payload") or "")
        if not 1 <= len(title) <= 32:
            raise _bad("INVOICE_TITLE_INVALID")  # best effort: 1-32 characters
        if not 1 <= len(description) <= 255:
            raise _bad("INVOICE_DESCRIPTION_INVALID")  # best effort: 1-255 characters
        if not 1 <= len(payload.encode()) <= 128:
            raise _bad("INVOICE_PAYLOAD_INVALID")  # best effort: 1-128 bytes
        currency = str(p.get("currency") or "")
        if currency != "XTR":
            # The fake sells only in Stars: other currencies need a payment provider.
            raise _bad("PAYMENT_PROVIDER_INVALID")
        if p.get("provider_token"):
            raise _bad("PAYMENT_PROVIDER_INVALID")  # Stars take an empty provider_token
        prices = p.get("prices")
        if not isinstance(prices, list) or len(prices) != 1 or not isinstance(prices[0], dict):
            raise _bad("STARS_INVOICE_INVALID")  # best effort: XTR takes exactly one price
        amount = _int(prices[0].get("amount"))
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise _bad("CURRENCY_TOTAL_AMOUNT_INVALID")
        if not 1 <= amount <= MAX_STARS:
            raise _bad("CURRENCY_TOTAL_AMOUNT_INVALID")
        period = _int(p.get("subscription_period")) if link else None
        if period is not None and period != SUBSCRIPTION_PERIOD:
            raise _bad("SUBSCRIPTION_PERIOD_INVALID")  # only 30 days, for now
        return Invoice(title, description, payload, currency, amount, period)

    async def _send_invoice(self, call: ApiCall) -> Any:
        p = call.params
        fake = self.fake
        chat_id = fake._resolve_chat_id(p.get("chat_id"))
        invoice = self._check_invoice(p, link=False)
        content = {
            "invoice": {
                "title": invoice.title,
                "description": invoice.description,
                "start_parameter": str(p.get("start_parameter") or ""),
                "currency": invoice.currency,
                "total_amount": invoice.amount,
            }
        }
        reply_to = fake._reply_target(chat_id, p)
        message = fake._record(
            chat_id,
            "invoice",
            p,
            text=invoice.title,
            plain=invoice.title,
            entities=[],
            parse_mode=None,
            content=content,
            reply_to=reply_to,
            thread_id=fake._thread(chat_id, p, reply_to),
        )
        invoice.message = message
        self.invoices.append(invoice)
        return message.raw

    async def _create_invoice_link(self, call: ApiCall) -> Any:
        invoice = self._check_invoice(call.params, link=True)
        invoice.link = f"https://t.me/${secrets.token_urlsafe(12)}"
        self._links[invoice.link] = invoice
        self.invoices.append(invoice)
        return invoice.link

    async def _answer_pre_checkout_query(self, call: ApiCall) -> Any:
        from botcore.testing.fake_telegram import _bad

        p = call.params
        query_id = str(p.get("pre_checkout_query_id") or "")
        if query_id not in self._open:  # unknown, answered, or past its 10 seconds
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        ok = p.get("ok") is True
        if not ok and not str(p.get("error_message") or "").strip():
            raise _bad("ERROR_TEXT_EMPTY")
        del self._open[query_id]
        answer = {"ok": ok, "error_message": p.get("error_message")}
        self._answers[query_id] = answer
        self.checkout_answers.append({"pre_checkout_query_id": query_id, **answer})
        return True

    def _payment_of(self, p: JSONDict) -> StarPayment:
        from botcore.testing.fake_telegram import _bad

        payment = self.payments.get(str(p.get("telegram_payment_charge_id") or ""))
        if payment is None:
            raise _bad("CHARGE_ID_INVALID")  # best effort (MTProto's name for it)
        if _int(p.get("user_id")) != payment.user_id:
            raise _bad("USER_ID_INVALID")
        return payment

    async def _refund_star_payment(self, call: ApiCall) -> Any:
        from botcore.testing.fake_telegram import _bad

        payment = self._payment_of(call.params)
        if payment.refunded:
            raise _bad("CHARGE_ALREADY_REFUNDED")
        payment.refunded = True
        self.refunds.append((payment.charge_id, int(time.time())))
        return True

    async def _edit_user_star_subscription(self, call: ApiCall) -> Any:
        from botcore.testing.fake_telegram import _bad

        payment = self._payment_of(call.params)
        if payment.subscription is None:
            raise _bad("CHARGE_ID_INVALID")
        canceled = call.params.get("is_canceled")
        if not isinstance(canceled, bool):
            raise _bad("is_canceled must be a boolean")
        payment.subscription.canceled_by_bot = canceled
        return True

    async def _get_star_transactions(self, call: ApiCall) -> Any:
        """The bot's transactions in chronological order: payments in (`source`), refunds out
        (`receiver`)."""
        rows: list[tuple[int, JSONDict]] = []
        for payment in self.payments.values():
            partner: JSONDict = {
                "type": "user",
                "transaction_type": "invoice_payment",
                "user": self.fake._user(payment.user_id, "Test", None, None),
                "invoice_payload": payment.invoice.payload,
            }
            if payment.invoice.subscription_period:
                partner["subscription_period"] = payment.invoice.subscription_period
            row = {"id": payment.charge_id, "amount": payment.invoice.amount, "date": payment.date}
            rows.append((payment.date, {**row, "source": partner}))
        for charge_id, date in self.refunds:
            payment = self.payments[charge_id]
            user = self.fake._user(payment.user_id, "Test", None, None)
            row = {"id": charge_id, "amount": payment.invoice.amount, "date": date}
            receiver = {"type": "user", "transaction_type": "invoice_payment", "user": user}
            rows.append((date, {**row, "receiver": receiver}))
        ordered = [row for _, row in sorted(rows, key=lambda pair: pair[0])]
        offset = max(int(call.params.get("offset") or 0), 0)
        limit = min(max(int(call.params.get("limit") or 100), 1), 100)
        return {"transactions": ordered[offset : offset + limit]}


def _int(value: Any) -> Any:
    """A form field as the integer it spells (the fake decodes only known fields as numbers)."""
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value
