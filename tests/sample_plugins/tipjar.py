"""A third-party plugin that takes tips in Telegram Stars: /tip sends an invoice of 5 Stars."""

from __future__ import annotations

from telegram import PreCheckoutQuery

from botcore import Command, Handler, Invoice, Turn, hookimpl

REFUSED = 13
"""A user this plugin takes no tips from."""
BROKEN = 666
"""A user whose pre-checkout makes this plugin raise."""


@hookimpl
def register_commands() -> list[Command]:
    return [Command("tip", tip, help="Tip the bot 5 Stars")]


@hookimpl
def register_handlers() -> list[Handler]:
    return [Handler({"payment"}, thank, name="tipjar")]


def tip(turn: Turn) -> Invoice:
    return Invoice("Tip", "A tip for the bot", "tip", 5)


@hookimpl
def pre_checkout(turn: Turn, query: PreCheckoutQuery) -> str | None:
    if query.from_user.id == BROKEN:
        raise RuntimeError("the tip jar is broken")
    return "No tips from you." if turn.user_id == REFUSED else None


async def thank(turn: Turn) -> str | None:
    paid = turn.message.successful_payment
    if paid is None or paid.invoice_payload != "tip":
        return None
    charge = paid.telegram_payment_charge_id
    first = await turn.app.store.add("tipjar", charge, 1, limit=1) is not None
    return "Thanks for the tip!" if first else None
