"""Payments in the core, through the fakes: any plugin sends an `Invoice`, judges the
pre-checkout (`pre_checkout` hook) and gets the payment as a turn of kind "payment"."""

from __future__ import annotations

from typing import Any

from botcore.testing.fake_telegram import FakeTelegram


async def test_any_plugin_can_take_payments_and_judge_the_pre_checkout(
    start_bot: Any, telegram: FakeTelegram, caplog: Any
) -> None:
    """A third-party plugin's invoice, pre-checkout and payment; a refusal is shown to the payer;
    a pre_checkout hook that raises refuses the payment (nothing is charged) and is logged."""
    await start_bot(["sample_plugins.tipjar"])
    sent = await telegram.reply_to("/tip")
    assert sent.kind == "invoice" and sent.raw["invoice"]["total_amount"] == 5
    refused = await telegram.stars.pay(sent, user_id=13)
    assert not refused.ok and refused.error_message == "No tips from you."
    broken = await telegram.stars.pay(sent, user_id=666, language_code="ru")
    assert broken.error_message == "Оплата сейчас недоступна. Звёзды не списаны."
    assert "plugin sample_plugins.tipjar failed in pre_checkout" in caplog.text
    paid = await telegram.stars.pay(sent)
    assert paid.ok and (await telegram.next_message(42)).text == "Thanks for the tip!"
    assert len(telegram.stars.payments) == 1
