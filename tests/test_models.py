"""/model end to end: the models bot.toml lists, picked with buttons, kept per user in the store,
never one the user may not use; vision and tools follow the chosen model's abilities."""

from __future__ import annotations

from typing import Any

from botcore.testing.fake_openai import FakeOpenAI
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
