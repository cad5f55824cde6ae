"""Inline buttons end to end: a press reaches the plugin that sent the keyboard, once, from the
user it was sent to; forged, replayed, expired and someone else's presses reach no code."""

from __future__ import annotations

from typing import Any

import pytest
from sample_plugins import asker

import botcore.buttons
from botcore.testing.fake_telegram import ANONYMOUS_ADMIN, FakeTelegram

ASKER = "sample_plugins.asker"
EXPIRED = "This button no longer works."


@pytest.fixture(autouse=True)
def _presses() -> None:
    asker.PRESSES.clear()


async def test_a_press_reaches_the_plugin_that_sent_the_keyboard_once(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    await start_bot([ASKER])
    question = await telegram.reply_to("/ask")
    assert [b["text"] for b in question.buttons] == ["Yes", "No"]
    data = question.buttons[0]["callback_data"]
    assert "delete" not in data and len(data.encode()) <= 64  # Telegram sees a token only
    await telegram.send_callback_query(question, button_text="Yes")
    assert (await telegram.next_message(42)).text == "you chose delete:42"
    assert asker.PRESSES == [(42, "delete:42")]
    await telegram.wait_for(lambda: len(telegram.callback_answers) == 1)
    assert not telegram.callback_answers[0].get("text")  # answered at once, no toast
    # The keyboard is spent: a second press of either button (or the same one sent again by
    # a client) is refused, and the plugin does not hear of it.
    await telegram.send_callback_query(question, button_text="No")
    await telegram.send_callback_query(question, data=data)
    await telegram.wait_for(lambda: len(telegram.callback_answers) == 3)
    assert [a.get("text") for a in telegram.callback_answers[1:]] == [EXPIRED, EXPIRED]
    assert asker.PRESSES == [(42, "delete:42")]


async def test_forged_presses_reach_no_code(start_bot: Any, telegram: FakeTelegram) -> None:
    await start_bot([ASKER])
    question = await telegram.reply_to("/ask")
    real = question.buttons[0]["callback_data"]
    forged = [
        "delete:42",
        "b:" + "A" * 12 + ":0",
        real[:-1] + "7",  # a button the keyboard does not have
        real.replace("b:", "b:x", 1),
        "",
    ]
    for data in forged:
        await telegram.send_callback_query(question, data=data)
    await telegram.wait_for(lambda: len(telegram.callback_answers) == len(forged))
    assert {a.get("text") for a in telegram.callback_answers} == {EXPIRED}
    assert asker.PRESSES == []
    await telegram.send_callback_query(question, data=real)  # the real one still works
    assert (await telegram.next_message(42)).text == "you chose delete:42"


async def test_in_a_group_only_the_asker_may_press(start_bot: Any, telegram: FakeTelegram) -> None:
    await start_bot([ASKER])
    group: dict[str, Any] = {"chat_id": -300, "chat_type": "group"}
    question = await telegram.reply_to("/ask", user_id=7, **group)
    await telegram.send_callback_query(question, button_text="Yes", user_id=8, language_code="ru")
    await telegram.wait_for(lambda: len(telegram.callback_answers) == 1)
    assert telegram.callback_answers[0]["text"] == "Эта кнопка не для вас."
    assert asker.PRESSES == []
    await telegram.send_callback_query(question, button_text="No", user_id=7)  # not spent
    assert (await telegram.next_message(-300)).text == "you chose keep:42"
    assert asker.PRESSES == [(7, "keep:42")]


async def test_a_keyboard_sent_to_an_anonymous_admin_is_the_chats(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    """A message sent on behalf of the group names no person: its keyboard cannot be kept for
    one, so the group's members may press it (before, every press was 'for someone else')."""
    await start_bot([ASKER])
    group: dict[str, Any] = {"chat_id": -300, "chat_type": "supergroup"}
    question = await telegram.reply_to("/ask", user_id=ANONYMOUS_ADMIN, sender_chat=-300, **group)
    await telegram.send_callback_query(question, button_text="Yes", user_id=8)
    assert (await telegram.next_message(-300)).text == "you chose delete:42"
    assert asker.PRESSES == [(8, "delete:42")]
    await telegram.send_callback_query(question, button_text="No", user_id=9)  # spent once
    await telegram.wait_for(lambda: len(telegram.callback_answers) == 2)
    assert telegram.callback_answers[1]["text"] == EXPIRED


async def test_an_expired_keyboard_is_refused(
    start_bot: Any, telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(botcore.buttons, "TTL", -1.0)  # expired as soon as it is sent
    await start_bot([ASKER])
    question = await telegram.reply_to("/ask")
    await telegram.send_callback_query(question, button_text="Yes")
    await telegram.wait_for(lambda: len(telegram.callback_answers) == 1)
    assert telegram.callback_answers[0]["text"] == EXPIRED
    assert asker.PRESSES == []


async def test_buttons_sent_mid_turn_and_pressed_after_a_restart(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    """turn.send names the plugin whose code runs as the keyboard's owner; the keyboard is in
    the store, so a restarted bot still honours it."""
    first = await start_bot([ASKER])
    await telegram.send_message("/ask_later")
    question = await telegram.next_message(42)
    assert question.text == "Sure?"
    assert (await telegram.next_message(42)).text == "asked"
    await first.stop()
    await start_bot([ASKER])
    await telegram.send_callback_query(question, button_text="Sure")
    assert (await telegram.next_message(42)).text == "you chose sure"


async def test_a_user_blocked_since_cannot_press(start_bot: Any, telegram: FakeTelegram) -> None:
    """The press is a turn of the presser's: access control (pre_message) sees it first."""
    running = await start_bot(["access", ASKER], bot={"admins": [1]})
    question = await telegram.reply_to("/ask")
    await running.app.override("plugins.access.blocked", [42])
    await telegram.send_callback_query(question, button_text="Yes")
    assert (await telegram.next_message(42)).text == "Sorry, you may not use this bot."
    assert asker.PRESSES == []
