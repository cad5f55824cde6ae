"""The fake Telegram's Stars payments, driven by the real python-telegram-bot: invoices as the Bot
API checks them, a user who pays, refunds, subscriptions and the transaction list."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from telegram import Bot, LabeledPrice, Update
from telegram.error import BadRequest

from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.stars import SUBSCRIPTION_PERIOD

TOKEN = "123456:TEST-TOKEN"
ONE = [LabeledPrice("Credit", 100)]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url) as tg_bot:
        yield tg_bot


async def next_update(bot: Bot, offset: int) -> Update:
    """The next update the bot gets (long polling, as a bot would)."""
    for _ in range(50):
        updates = await bot.get_updates(offset=offset, timeout=1)
        if updates:
            return updates[0]
    raise AssertionError("no update came")


async def test_invoices_are_checked_as_the_bot_api_documents(fake: FakeTelegram, bot: Bot) -> None:
    message = await bot.send_invoice(42, "Credit", "Credit for the bot", "p:1", "XTR", ONE)
    assert message.invoice is not None and message.invoice.total_amount == 100
    assert fake.stars.invoice().message is fake.bot_messages(42)[-1]
    refusals = {
        "two prices": dict(prices=[LabeledPrice("a", 1), LabeledPrice("b", 2)]),
        "no Stars": dict(prices=[LabeledPrice("a", 0)]),
        "too many": dict(prices=[LabeledPrice("a", 10001)]),
        "a provider": dict(provider_token="12345:TEST"),
        "a currency": dict(currency="USD"),
        "an empty payload": dict(payload=""),
        "a long title": dict(title="x" * 33),
    }
    for why, change in refusals.items():
        args = {"title": "Credit", "description": "d", "payload": "p", "currency": "XTR"}
        args |= {"prices": ONE, **change}
        with pytest.raises(BadRequest):
            await bot.send_invoice(42, **args)  # type: ignore[arg-type]
        assert fake.calls("sendInvoice")[-1].status == 400, why
    link = await bot.create_invoice_link(
        "Monthly", "A month", "p:2", "XTR", ONE, subscription_period=SUBSCRIPTION_PERIOD
    )
    assert link.startswith("https://t.me/$")
    with pytest.raises(BadRequest, match=r"(?i)SUBSCRIPTION_PERIOD_INVALID"):
        await bot.create_invoice_link(
            "Weekly", "A week", "p", "XTR", ONE, subscription_period=604800
        )


async def test_a_payment_waits_for_the_pre_checkout_answer(fake: FakeTelegram, bot: Bot) -> None:
    """The bot gets a pre_checkout_query; its ok brings the successful_payment, its refusal
    (with the message Telegram shows) or its silence brings nothing."""
    await bot.send_invoice(42, "Credit", "Credit for the bot", "p:1", "XTR", ONE)
    paying = asyncio.create_task(fake.stars.pay())
    update = await next_update(bot, 0)
    query = update.pre_checkout_query
    assert query is not None and query.invoice_payload == "p:1" and query.total_amount == 100
    assert query.currency == "XTR" and query.from_user.id == 42
    with pytest.raises(BadRequest, match=r"(?i)ERROR_TEXT_EMPTY"):
        await bot.answer_pre_checkout_query(query.id, ok=False)
    await bot.answer_pre_checkout_query(query.id, ok=True)
    checkout = await paying
    assert checkout.ok and checkout.payment is not None
    update = await next_update(bot, update.update_id + 1)
    assert update.message is not None and update.message.successful_payment is not None
    paid = update.message.successful_payment
    assert paid.telegram_payment_charge_id == checkout.payment.charge_id
    assert paid.total_amount == 100 and paid.invoice_payload == "p:1"
    assert not paid.is_recurring and paid.subscription_expiration_date is None
    with pytest.raises(BadRequest, match=r"(?i)query id is invalid"):  # answered already
        await bot.answer_pre_checkout_query(query.id, ok=True)

    paying = asyncio.create_task(fake.stars.pay(user_id=7))
    update = await next_update(bot, update.update_id + 1)
    assert update.pre_checkout_query is not None
    await bot.answer_pre_checkout_query(update.pre_checkout_query.id, False, error_message="No")
    refused = await paying
    assert not refused.ok and refused.error_message == "No" and refused.payment is None

    silent = await fake.stars.pay(user_id=8, timeout=0.3)
    assert silent.timed_out and silent.payment is None
    assert len(fake.stars.payments) == 1 and fake.pending_updates == 2  # two queries left


async def test_refunds_subscriptions_and_transactions(fake: FakeTelegram, bot: Bot) -> None:
    link = await bot.create_invoice_link(
        "Monthly", "A month", "sub", "XTR", ONE, subscription_period=SUBSCRIPTION_PERIOD
    )

    async def answer_all() -> None:
        offset = 0
        while True:
            for update in await bot.get_updates(offset=offset, timeout=1):
                offset = update.update_id + 1
                if update.pre_checkout_query is not None:
                    await bot.answer_pre_checkout_query(update.pre_checkout_query.id, ok=True)

    answering = asyncio.create_task(answer_all())
    try:
        first = (await fake.stars.pay(link)).payment
    finally:
        answering.cancel()
        with pytest.raises(asyncio.CancelledError):
            await answering
    assert first is not None
    paid = first.successful_payment
    assert paid["is_recurring"] and paid["is_first_recurring"]
    assert paid["subscription_expiration_date"] >= int(time.time()) + SUBSCRIPTION_PERIOD - 5
    renewal = await fake.stars.renew(first.charge_id)
    assert renewal is not None and renewal.charge_id != first.charge_id
    assert renewal.successful_payment["is_recurring"]
    assert "is_first_recurring" not in renewal.successful_payment
    assert (
        renewal.successful_payment["subscription_expiration_date"]
        == paid["subscription_expiration_date"] + SUBSCRIPTION_PERIOD
    )
    await bot.edit_user_star_subscription(42, first.charge_id, True)
    assert await fake.stars.renew(first.charge_id) is None  # cancelled by the bot: no charge
    await bot.edit_user_star_subscription(42, first.charge_id, False)
    fake.stars.cancel(renewal.charge_id)  # the user cancels in Telegram: the bot hears nothing
    assert await fake.stars.renew(first.charge_id) is None

    assert await bot.refund_star_payment(42, renewal.charge_id)
    with pytest.raises(BadRequest, match=r"(?i)CHARGE_ALREADY_REFUNDED"):
        await bot.refund_star_payment(42, renewal.charge_id)
    with pytest.raises(BadRequest, match=r"(?i)CHARGE_ID_INVALID"):
        await bot.refund_star_payment(42, "stx-nothing")
    with pytest.raises(BadRequest, match=r"(?i)USER_ID_INVALID"):
        await bot.refund_star_payment(7, first.charge_id)
    transactions = (await bot.get_star_transactions()).transactions
    assert [t.id for t in transactions] == [first.charge_id, renewal.charge_id, renewal.charge_id]
    assert transactions[0].source is not None and transactions[2].receiver is not None
