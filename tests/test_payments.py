"""payments end to end through the fakes: /buy, the pre-checkout, credit in the usage ledger
exactly once per charge, refunds, subscriptions, /paysupport, and a kill -9 after a payment."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
from botcore_shared_stores.testing import wipe

from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import BotMessage, FakeTelegram
from botcore.testing.harness import BotHarness, RunningBot
from botcore.testing.stores import SERVERS, Server, server_store, server_url

ADMIN = 1
PRICES = {"image.images": 0.04}
SMALL = {"title": "Credit", "description": "$0.08 of credit", "stars": 50, "credit": 0.08}
MONTHLY = {
    "title": "Monthly",
    "description": "$1 of credit every month",
    "stars": 100,
    "credit": 1.0,
    "subscription": True,
}
SETTINGS: dict[str, Any] = {
    "usage": {"prices": PRICES, "user": {"daily": {"cost": 0.04}}},
    "payments": {"packages": {"small": SMALL, "monthly": MONTHLY}},
}
PLUGINS = ["access", "usage", "payments", "image"]
GONE = "This offer is no longer available. Please choose again: /buy"


async def start(start_bot: Any, **settings: Any) -> RunningBot:
    running: RunningBot = await start_bot(
        PLUGINS, bot={"admins": [ADMIN]}, settings={**SETTINGS, **settings}
    )
    return running


async def invoice(telegram: FakeTelegram, package: str, user_id: int = 42) -> BotMessage:
    """/buy, then the package's button: the bot's invoice (or its message with the link)."""
    menu = await telegram.reply_to("/buy", user_id=user_id)
    label = {"small": "Credit: 50 ⭐", "monthly": "Monthly: 100 ⭐ a month"}[package]
    await telegram.send_callback_query(menu, button_text=label, user_id=user_id)
    return await telegram.next_message(user_id)


def link_of(message: BotMessage) -> str:
    (button,) = message.buttons
    return str(button["url"])


async def credit_line(telegram: FakeTelegram, user_id: int = 42) -> str | None:
    text = (await telegram.reply_to("/usage", user_id=user_id)).text or ""
    return next((line for line in text.splitlines() if line.startswith("Credit")), None)


async def test_a_purchase_is_credited_and_budgets_draw_on_it(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    await start(start_bot)
    assert (await telegram.reply_to("/image a cat")).kind == "photo"
    over = await telegram.reply_to("/image a cat")
    assert (over.text or "").startswith("You have used up your daily budget.")

    sent = await invoice(telegram, "small")
    assert sent.kind == "invoice"
    call = telegram.calls("sendInvoice")[-1].params
    assert call["currency"] == "XTR" and call["prices"] == [{"label": "Credit", "amount": 50}]
    assert not call.get("provider_token")
    checkout = await telegram.stars.pay(sent)
    assert checkout.ok and checkout.payment is not None
    thanks = await telegram.next_message(42)
    assert thanks.text == "Thank you! $0.08 of credit was added. /usage shows it."
    assert await credit_line(telegram) == "Credit: $0.08 left of $0.08 bought"
    admin_note = await telegram.next_message(ADMIN)
    assert checkout.payment.charge_id in (admin_note.text or "")

    # Past the budget, the credit pays: two more images, then it is spent.
    assert (await telegram.reply_to("/image a dog")).kind == "photo"
    assert (await telegram.reply_to("/image a bird")).kind == "photo"
    over = await telegram.reply_to("/image a fish")
    assert (over.text or "").startswith("You have used up your daily budget.")
    assert await credit_line(telegram) == "Credit: $0.00 left of $0.08 bought"


async def test_credit_drawn_for_a_call_the_bot_budget_refuses_is_given_back(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    usage = {**SETTINGS["usage"], "global": {"monthly": {"image.images": 2}}}
    await start(start_bot, usage=usage)
    assert (await telegram.reply_to("/image a cat")).kind == "photo"
    await telegram.stars.pay(await invoice(telegram, "small"))
    await telegram.next_message(42)
    assert (await telegram.reply_to("/image a dog")).kind == "photo"  # paid from credit
    refused = await telegram.reply_to("/image a bird")  # the bot's own budget is spent
    assert (refused.text or "").startswith("The bot has used up its monthly budget.")
    assert await credit_line(telegram) == "Credit: $0.04 left of $0.08 bought"


async def test_pre_checkout_is_refused_for_an_offer_gone_or_a_user_not_allowed(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    running = await start(start_bot, access={"open": False, "users": [42]})
    sent = await invoice(telegram, "small")
    # Someone not allowed pays the invoice (it was forwarded to them): access refuses it.
    stranger = await telegram.stars.pay(sent, user_id=7)
    assert not stranger.ok and stranger.error_message is not None
    assert "this bot is private" in stranger.error_message
    # The operator withdraws the package before the user pays.
    await running.app.override("plugins.payments.packages", {"monthly": MONTHLY})
    gone = await telegram.stars.pay(sent)
    assert not gone.ok and gone.error_message == GONE
    ru = await telegram.stars.pay(sent, language_code="ru")
    assert ru.error_message == "Это предложение больше недоступно. Выберите снова: /buy"
    assert not telegram.stars.payments
    assert await credit_line(telegram) is None


async def test_a_duplicate_successful_payment_is_credited_once(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    await start(start_bot)
    checkout = await telegram.stars.pay(await invoice(telegram, "small"))
    assert checkout.payment is not None
    await telegram.next_message(42)
    # The same payment again, in an update of its own (a second delivery).
    message = dict(telegram._user_msgs[(42, max(k[1] for k in telegram._user_msgs if k[0] == 42))])
    assert message["successful_payment"]["telegram_payment_charge_id"] == checkout.payment.charge_id
    await telegram.send_update({"message": {**message, "message_id": message["message_id"] + 100}})
    await telegram.next_message(42)
    assert await credit_line(telegram) == "Credit: $0.08 left of $0.08 bought"


async def test_admins_refund_once_and_the_credit_goes_back(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    await start(start_bot)
    checkout = await telegram.stars.pay(await invoice(telegram, "small"))
    assert checkout.payment is not None
    charge = checkout.payment.charge_id
    await telegram.next_message(42)
    await telegram.next_message(ADMIN)  # the note of the payment
    refused = await telegram.reply_to(f"/refund {charge}")
    assert refused.text == "/refund is for the bot's admins only."
    done = await telegram.reply_to(f"/refund {charge}", user_id=ADMIN)
    assert done.text == "Refunded 50 ⭐ to user 42; $0.08 of credit taken back."
    assert telegram.stars.payments[charge].refunded
    again = await telegram.reply_to(f"/refund {charge}", user_id=ADMIN)
    assert again.text == f"Payment {charge} was already refunded."
    assert len(telegram.stars.refunds) == 1
    unknown = await telegram.reply_to("/refund stx-nothing", user_id=ADMIN)
    assert unknown.text == "No payment stx-nothing is known here."
    assert await credit_line(telegram) is None  # nothing bought, nothing left
    over = await telegram.reply_to("/image a cat")
    assert over.kind == "photo"  # the day's own budget still
    assert (await telegram.reply_to("/image a cat")).kind == "text"


async def test_a_subscription_renews_until_cancelled(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    await start(start_bot)
    offer = await invoice(telegram, "monthly")
    link = link_of(offer)
    assert telegram.calls("createInvoiceLink")[-1].params["subscription_period"] == 2592000
    first = (await telegram.stars.pay(link)).payment
    assert first is not None
    assert (await telegram.next_message(42)).text == (
        "Thank you! $1.00 of credit was added. /usage shows it."
    )
    renewal = await telegram.stars.renew(first.charge_id)
    assert renewal is not None
    renewed = await telegram.next_message(42)
    assert (renewed.text or "").startswith("Your subscription was renewed until ")
    assert await credit_line(telegram) == "Credit: $2.00 left of $2.00 bought"
    for _ in range(2):  # the notes of the two payments
        assert "paid 100 ⭐ for monthly" in ((await telegram.next_message(ADMIN)).text or "")
    menu = await telegram.reply_to("/buy")
    assert "Your subscription Monthly: paid until " in (menu.text or "")
    assert "not renewed" not in (menu.text or "")

    # An admin refunds the renewal: its credit goes back and the subscription stops renewing.
    done = await telegram.reply_to(f"/refund {renewal.charge_id}", user_id=ADMIN)
    assert done.text == "Refunded 100 ⭐ to user 42; $1.00 of credit taken back."
    assert telegram.stars.subscriptions[first.charge_id].canceled_by_bot
    assert await telegram.stars.renew(first.charge_id) is None
    menu = await telegram.reply_to("/buy")
    assert "paid until" in (menu.text or "") and ", not renewed." in (menu.text or "")
    assert await credit_line(telegram) == "Credit: $1.00 left of $1.00 bought"


async def test_a_user_cancelling_a_subscription_gets_no_more_credit(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    await start(start_bot)
    first = (await telegram.stars.pay(link_of(await invoice(telegram, "monthly")))).payment
    assert first is not None
    await telegram.next_message(42)
    telegram.stars.cancel(first.charge_id)
    assert await telegram.stars.renew(first.charge_id) is None
    assert await credit_line(telegram) == "Credit: $1.00 left of $1.00 bought"


async def test_paysupport_answers_and_reaches_the_admins(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    await start(start_bot, payments={"packages": {"small": SMALL}, "support": "Or @operator."})
    answer = await telegram.reply_to("/paysupport")
    assert (answer.text or "").startswith("Questions about a payment, or a refund?")
    assert (answer.text or "").endswith("Or @operator.")
    ru = await telegram.reply_to("/paysupport", language_code="ru")
    assert (ru.text or "").startswith("Вопрос об оплате или возврат?")
    sent = await telegram.reply_to("/paysupport I paid twice")
    assert sent.text == "Sent to the admins. They will answer you here."
    note = await telegram.next_message(ADMIN)
    assert note.text == "Payment support request from user 42: I paid twice"


async def test_kill_9_after_a_payment_credits_it_exactly_once(
    telegram: FakeTelegram, bot_harness: BotHarness, tmp_path: Path
) -> None:
    """The payment's turn has credited it when the process dies (its note to the admins hangs
    at Telegram); after the restart the payment is handled again: the user is thanked, not asked
    to send it again, and the credit is there once."""
    config = bot_harness.write_config(
        "bot.toml",
        ["usage", "payments"],
        bot={"poll_timeout": 5, "admins": [ADMIN]},
        store={"path": tmp_path / "s.sqlite3"},
        settings={"payments": {"packages": {"small": SMALL}}},
    )
    runs = iter(range(2))

    async def spawn() -> asyncio.subprocess.Process:
        with (tmp_path / f"run{next(runs)}.log").open("w") as log:
            return await bot_harness.spawn(config, stdout=asyncio.subprocess.DEVNULL, stderr=log)

    bot = await spawn()
    try:
        await telegram.wait_for(lambda: bool(telegram.calls("getUpdates")), timeout=30)
        sent = await invoice(telegram, "small")
        # The admins' note of the payment hangs: the credit is written, the turn is not over.
        telegram.slow("sendMessage", 600)
        checkout = await telegram.stars.pay(sent, timeout=20)
        assert checkout.ok
        await telegram.wait_for(
            lambda: telegram.calls("sendMessage")[-1].params["chat_id"] == ADMIN,
            timeout=20,
            poll_interval=0.2,  # its answer (which would re-check) is what hangs
        )
        bot.send_signal(signal.SIGKILL)
        await bot.wait()
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
    before = len(telegram.bot_messages(42))
    bot = await spawn()
    try:
        # Queued behind the payment taken from the journal: answered once it was handled.
        await telegram.send_message("/usage")
        await telegram.wait_for(
            lambda: any((m.text or "").startswith("Today") for m in telegram.bot_messages(42)),
            timeout=30,
        )
        after = [m.text or "" for m in telegram.bot_messages(42)[before:]]
        assert after[0] == "Thank you! $0.08 of credit was added. /usage shows it.", after
        assert "Credit: $0.08 left of $0.08 bought" in after[-1].splitlines()
    finally:
        bot.send_signal(signal.SIGTERM)
        await bot.wait()


@pytest.mark.parametrize("backend", SERVERS)
async def test_two_instances_on_one_store_credit_a_payment_once(
    backend: Server,
    start_bot: Any,
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    tmp_path: Path,
) -> None:
    """The same payment reaches two instances sharing a store (each in an update of its own, as
    a webhook redelivery to another instance would): it is credited once."""
    url = server_url(backend)
    store = server_store(backend)
    await store.open()
    try:
        await wipe(store)
        shared = {"backend": backend, "url": url}
        await start_bot(PLUGINS, bot={"admins": [ADMIN]}, store=shared, settings=SETTINGS)
        checkout = await telegram.stars.pay(await invoice(telegram, "small"))
        assert checkout.payment is not None
        await telegram.next_message(42)
        message = telegram._user_msgs[(42, max(k[1] for k in telegram._user_msgs if k[0] == 42))]
        async with FakeTelegram() as other:
            (tmp_path / "b").mkdir()
            harness = BotHarness(other, openai_server, tmp_path / "b")
            try:
                await harness.start(
                    PLUGINS, bot={"admins": [ADMIN]}, store=shared, settings=SETTINGS
                )
                await other.send_update({"update_id": 5000, "message": message})
                thanks = await other.next_message(42)
                assert (thanks.text or "").startswith("Thank you!")
            finally:
                await harness.stop_all()
        assert await credit_line(telegram) == "Credit: $0.08 left of $0.08 bought"
        counters = await store.totals("usage", "credit:u42:")
        assert counters == {f"credit:u42:{checkout.payment.charge_id}": 0.08}
    finally:
        await store.close()


async def test_a_payment_no_plugin_takes_is_told_to_the_admins_and_the_user(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    running = await start(start_bot)
    checkout = await telegram.stars.pay(await invoice(telegram, "small"))
    assert checkout.payment is not None
    await telegram.next_message(42)
    await telegram.next_message(ADMIN)  # the plugin's note of the first payment
    # A second payment arrives after an admin switched payments off (its pre-checkout passed
    # before): the Stars are taken, so it must reach someone who can credit or refund it.
    running.app.switch_plugin("payments", False)
    message = dict(telegram._user_msgs[(42, max(k[1] for k in telegram._user_msgs if k[0] == 42))])
    paid = {**message["successful_payment"], "telegram_payment_charge_id": "stxSECOND"}
    await telegram.send_update(
        {
            "message": {
                **message,
                "message_id": message["message_id"] + 100,
                "successful_payment": paid,
            }
        }
    )
    told = await telegram.next_message(42)
    assert told.text is not None and "nothing is lost" in told.text
    admin = (await telegram.next_message(ADMIN)).text or ""
    assert "stxSECOND" in admin and "user 42" in admin and "50 XTR" in admin
    assert await credit_line(telegram) == "Credit: $0.08 left of $0.08 bought"


async def test_a_subscription_bought_again_after_a_refund_renews_and_a_refund_stops_it(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    await start(start_bot)
    first = (await telegram.stars.pay(link_of(await invoice(telegram, "monthly")))).payment
    assert first is not None
    await telegram.next_message(42)
    await telegram.next_message(ADMIN)  # the note of the payment
    done = await telegram.reply_to(f"/refund {first.charge_id}", user_id=ADMIN)
    assert done.text == "Refunded 100 ⭐ to user 42; $1.00 of credit taken back."
    assert telegram.stars.subscriptions[first.charge_id].canceled_by_bot

    # The user subscribes again: a new subscription, renewed, and /buy says so.
    again = (await telegram.stars.pay(link_of(await invoice(telegram, "monthly")))).payment
    assert again is not None and again.charge_id != first.charge_id
    await telegram.next_message(42)
    await telegram.next_message(ADMIN)
    menu = await telegram.reply_to("/buy")
    assert "Your subscription Monthly: paid until " in (menu.text or "")
    assert "not renewed" not in (menu.text or "")

    # Its refund stops its renewals too, as the first one's did.
    done = await telegram.reply_to(f"/refund {again.charge_id}", user_id=ADMIN)
    assert done.text == "Refunded 100 ⭐ to user 42; $1.00 of credit taken back."
    assert telegram.stars.subscriptions[again.charge_id].canceled_by_bot
    assert await telegram.stars.renew(again.charge_id) is None
    assert await credit_line(telegram) is None


async def test_a_refund_of_spent_credit_leaves_no_debt_to_eat_the_next_purchase(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    await start(start_bot)
    assert (await telegram.reply_to("/image a cat")).kind == "photo"  # the day's own budget
    checkout = await telegram.stars.pay(await invoice(telegram, "small"))
    assert checkout.payment is not None
    await telegram.next_message(42)
    await telegram.next_message(ADMIN)
    assert (await telegram.reply_to("/image a dog")).kind == "photo"  # half the credit
    assert await credit_line(telegram) == "Credit: $0.04 left of $0.08 bought"
    done = await telegram.reply_to(f"/refund {checkout.payment.charge_id}", user_id=ADMIN)
    assert done.text == (
        "Refunded 50 ⭐ to user 42; $0.04 of credit taken back ($0.04 of it was already spent)."
    )
    again = await telegram.reply_to(f"/refund {checkout.payment.charge_id}", user_id=ADMIN)
    assert again.text == f"Payment {checkout.payment.charge_id} was already refunded."
    assert await credit_line(telegram) == "Credit: $0.00 left of $0.04 bought"

    # The next purchase is the user's in full: told so, and /image draws on it.
    await telegram.stars.pay(await invoice(telegram, "small"))
    assert (await telegram.next_message(42)).text == (
        "Thank you! $0.08 of credit was added. /usage shows it."
    )
    assert await credit_line(telegram) == "Credit: $0.08 left of $0.12 bought"
    assert (await telegram.reply_to("/image a bird")).kind == "photo"


async def test_refunding_an_earlier_subscription_stops_that_one_not_the_newer(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    await start(start_bot)
    older = (await telegram.stars.pay(link_of(await invoice(telegram, "monthly")))).payment
    assert older is not None
    await telegram.next_message(42)
    newer = (await telegram.stars.pay(link_of(await invoice(telegram, "monthly")))).payment
    assert newer is not None
    await telegram.next_message(42)
    for _ in range(2):
        await telegram.next_message(ADMIN)
    done = await telegram.reply_to(f"/refund {older.charge_id}", user_id=ADMIN)
    assert done.text == "Refunded 100 ⭐ to user 42; $1.00 of credit taken back."
    assert telegram.stars.subscriptions[older.charge_id].canceled_by_bot
    assert not telegram.stars.subscriptions[newer.charge_id].canceled_by_bot
    assert await telegram.stars.renew(newer.charge_id) is not None
