"""/model end to end: the models bot.toml lists, picked with buttons, kept per user in the store,
never one the user may not use; vision and tools follow the chosen model's abilities."""

from __future__ import annotations

from typing import Any

from botcore.testing.fake_openai import ChatReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram

MODELS: dict[str, Any] = {
    "gpt-fast": {"label": "Fast"},
    "gpt-secret": {"label": "Secret", "users": [7]},
    "gpt-staff": {"label": "Staff", "admins_only": True},
    "gpt-eyes": {"label": "Eyes", "vision": True, "tools": False},
}
CHAT: dict[str, Any] = {"stream": False, "model": "gpt-default", "models": MODELS}


def models_asked(openai_server: FakeOpenAI) -> list[str]:
    return [str(r.get("model")) for r in openai_server.chat_requests]


async def test_model_offers_what_the_user_may_use_and_the_choice_is_used_and_kept(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    first = await start_bot(["history", "chat"], bot={"admins": [1]}, settings={"chat": CHAT})
    menu = await telegram.reply_to("/model")
    assert menu.text == "Which model should answer you?"
    assert [b["text"] for b in menu.buttons] == ["✓ gpt-default", "Fast", "Eyes"]
    await telegram.send_callback_query(menu, button_text="Fast")
    assert (await telegram.next_message(42)).text == "Fast answers you from now on."
    await telegram.reply_to("hello")
    assert models_asked(openai_server)[-1] == "gpt-fast"
    # Kept in the store: a restart keeps it, and /model marks it.
    await first.stop()
    await start_bot(["history", "chat"], bot={"admins": [1]}, settings={"chat": CHAT})
    await telegram.reply_to("again")
    assert models_asked(openai_server)[-1] == "gpt-fast"
    menu = await telegram.reply_to("/model")
    assert [b["text"] for b in menu.buttons] == ["gpt-default", "✓ Fast", "Eyes"]
    await telegram.send_callback_query(menu, button_text="gpt-default")
    assert (await telegram.next_message(42)).text == "gpt-default answers you from now on."
    await telegram.reply_to("back")
    assert models_asked(openai_server)[-1] == "gpt-default"


async def test_a_model_not_allowed_for_a_user_is_neither_shown_nor_used(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    running = await start_bot(["history", "chat"], bot={"admins": [1]}, settings={"chat": CHAT})
    listed = await telegram.reply_to("/model", user_id=7)
    assert [b["text"] for b in listed.buttons] == ["✓ gpt-default", "Fast", "Secret", "Eyes"]
    staff = await telegram.reply_to("/model", user_id=1)  # an admin may use every model
    assert "Staff" in [b["text"] for b in staff.buttons]
    await telegram.send_callback_query(listed, button_text="Secret", user_id=7)
    assert (await telegram.next_message(7)).text == "Secret answers you from now on."
    await telegram.reply_to("psst", user_id=7)
    assert models_asked(openai_server)[-1] == "gpt-secret"
    # User 7 is no longer allowed: the stored choice is not used, and not offered.
    secret = {**MODELS["gpt-secret"], "users": []}
    await running.app.override("plugins.chat.models.gpt-secret", secret)
    await telegram.reply_to("still?", user_id=7)
    assert models_asked(openai_server)[-1] == "gpt-default"
    listed = await telegram.reply_to("/model", user_id=7)
    assert "Secret" not in [b["text"] for b in listed.buttons]
    # A keyboard sent before the change cannot pick it either.
    old = await telegram.reply_to("/model", user_id=1)
    left = {name: m for name, m in MODELS.items() if name != "gpt-staff"}
    await running.app.override("plugins.chat.models", {**left, "gpt-secret": secret})
    await telegram.send_callback_query(old, button_text="Staff", user_id=1)
    assert (await telegram.next_message(1)).text == (
        "That model is not available (any more). Send /model to choose again."
    )


async def test_without_models_there_is_nothing_to_choose(
    start_bot: Any, telegram: FakeTelegram
) -> None:
    await start_bot(["chat"], settings={"chat": {"model": "gpt-default"}}, bot={"language": "ru"})
    reply = await telegram.reply_to("/model", language_code="ru")
    assert reply.text == "Этот бот отвечает моделью gpt-default; другой модели для выбора нет."
    assert not reply.buttons


async def test_tools_follow_the_chosen_models_abilities(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat", "sample_plugins.toolbox"], settings={"chat": CHAT})
    await telegram.reply_to("with tools")
    assert openai_server.chat_requests[-1].get("tools")
    menu = await telegram.reply_to("/model")
    await telegram.send_callback_query(menu, button_text="Eyes")
    await telegram.next_message(42)
    await telegram.reply_to("no tools now")
    assert openai_server.chat_requests[-1]["model"] == "gpt-eyes"
    assert "tools" not in openai_server.chat_requests[-1]


async def test_images_go_to_the_chosen_model_when_it_takes_them(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    import io

    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(picture, "PNG")
    chat = {**CHAT, "vision_model": "gpt-vision"}
    await start_bot(["history", "chat"], settings={"chat": chat})
    await telegram.send_photo(picture.getvalue(), caption="what is it?")
    await telegram.next_message(42)
    assert models_asked(openai_server)[-1] == "gpt-vision"  # the default cannot see: vision_model
    menu = await telegram.reply_to("/model")
    await telegram.send_callback_query(menu, button_text="Eyes")
    await telegram.next_message(42)
    await telegram.send_photo(picture.getvalue(), caption="and now?")
    await telegram.next_message(42)
    assert models_asked(openai_server)[-1] == "gpt-eyes"  # the chosen model takes images


async def pick(telegram: FakeTelegram, label: str) -> None:
    menu = await telegram.reply_to("/model")
    await telegram.send_callback_query(menu, button_text=label)
    await telegram.next_message(42)


async def test_each_model_is_priced_at_its_own_price_in_the_ledger(
    start_bot: Any, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    priced = {
        "gpt-default": {"input_price": 1.0, "output_price": 4.0},  # per 1M tokens
        "gpt-pricey": {"label": "Pricey", "input_price": 10_000, "output_price": 40_000},
        "gpt-plain": {"label": "Plain"},  # no price: [plugins.usage] prices
    }
    usage = {
        "prices": {"chat.input_tokens": 0.000002, "chat.output_tokens": 0.000008},
        "user": {"daily": {"cost": 1}},
    }
    chat = {"stream": False, "model": "gpt-default", "models": priced}
    await start_bot(["usage", "chat"], settings={"chat": chat, "usage": usage})
    spent = {
        "prompt_tokens": 1000,
        "completion_tokens": 500,  # 200 of them reasoning: billed as output, once
        "total_tokens": 1500,
        "completion_tokens_details": {"reasoning_tokens": 200},
    }
    openai_server.script_chat(ChatReply(text="one", usage=spent))
    await telegram.reply_to("hello")
    report = (await telegram.reply_to("/usage")).text or ""
    assert "cost: $0.003\n" in report  # 1000 × $1/1M + 500 × $4/1M
    await pick(telegram, "Plain")
    openai_server.script_chat(ChatReply(text="two", usage=spent))
    await telegram.reply_to("hello")
    report = (await telegram.reply_to("/usage")).text or ""
    assert "cost: $0.009\n" in report  # + 1000 × $0.000002 + 500 × $0.000008
    # The budget is checked at the chosen model's price: 1000 answer tokens of Pricey are $40.
    await pick(telegram, "Pricey")
    refused = await telegram.reply_to("hello")
    assert refused.text is not None and refused.text.startswith(
        "You have used up your daily budget"
    )
    assert models_asked(openai_server) == ["gpt-default", "gpt-plain"]
