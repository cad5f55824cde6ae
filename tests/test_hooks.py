"""The hooks no first-party feature test covers from a plugin's side: texts, the lifecycle, and a
history store of the plugin's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sample_plugins import notebook, quota

from botcore.config import StartupError
from botcore.testing.fake_openai import TINY_PNG, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness

NOTEBOOK = "sample_plugins.notebook"
ECHO = "sample_plugins.echo"
QUOTA = "sample_plugins.quota"


@pytest.fixture(autouse=True)
def _fresh_events() -> Iterator[None]:
    notebook.EVENTS.clear()
    yield
    notebook.EVENTS.clear()


async def test_register_texts_speak_the_users_language_with_fallback(
    start_bot, telegram: FakeTelegram
) -> None:
    await start_bot([NOTEBOOK])
    assert (await telegram.reply_to("/notes")).text == "0 notes so far · English only"
    reply = await telegram.reply_to("/notes", language_code="ru", user_id=7)
    assert reply.text == "Заметок: 0 · English only"  # a key missing in ru falls back to en
    menu = {c["command"]: c["description"] for c in telegram.commands[("default", "ru")]}
    assert menu["notes"] == "Сосчитать заметки"


async def test_startup_and_shutdown_run_once_around_the_updates(
    bot_harness: BotHarness, telegram: FakeTelegram
) -> None:
    bot = await bot_harness.start([NOTEBOOK])
    assert notebook.EVENTS == ["startup"]
    await telegram.reply_to("/notes")
    await bot.stop()
    assert notebook.EVENTS == ["startup", "notes", "shutdown with 0 chats"]


async def test_a_failing_startup_stops_start_up_naming_the_plugin(start_bot) -> None:
    with pytest.raises(StartupError) as caught:
        await start_bot([NOTEBOOK], settings={NOTEBOOK: {"fail_startup": True}})
    assert str(caught.value) == (
        f"plugin {NOTEBOOK!r}: startup failed: RuntimeError: the notebook is locked"
    )


async def test_a_plugins_history_store_is_the_one_chat_uses(
    bot_harness: BotHarness, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    # The history plugin is loaded too, but its store is trylast: the notebook's wins.
    bot = await bot_harness.start([NOTEBOOK, "history", "chat"], store={"path": "h.sqlite3"})
    openai_server.script_chat("Noted.", "You said: remember milk.")
    assert (await telegram.reply_to("remember milk")).text == "Noted."
    assert (await telegram.reply_to("what did I say?")).text == "You said: remember milk."
    sent = [m["content"] for m in openai_server.last_chat_messages()]
    assert sent[1:] == ["remember milk", "Noted.", "what did I say?"]
    store = notebook.STORES[bot.app]
    assert bot.app.history is store
    assert [m["content"] for m in store.chats[42]] == [
        "remember milk",
        "Noted.",
        "what did I say?",
        "You said: remember milk.",
    ]
    assert (await telegram.reply_to("/notes")).text == "4 notes so far · English only"


GATEKEEPER = "sample_plugins.gatekeeper"


async def test_the_guides_gatekeeper_plugin(start_bot, telegram: FakeTelegram) -> None:
    """docs/plugin-guide.md quotes sample_plugins/gatekeeper.py: pre/post hooks and a handler."""
    await start_bot(
        [GATEKEEPER, ECHO],
        settings={GATEKEEPER: {"allowed_users": [42], "signature": "— the bot"}},
    )
    assert (await telegram.reply_to("  hi  ")).text == "echo: hi\n\n— the bot"
    # post_message sees every reply that ends a turn, a pre_message's answer too.
    refused = await telegram.reply_to("hi", user_id=7)
    assert refused.text == "Sorry, this bot is private.\n\n— the bot"
    await telegram.send_photo(TINY_PNG)
    photo = await telegram.next_message(42)
    assert photo.text == f"A 8×8 photo, {len(TINY_PNG)} bytes.\n\n— the bot"


async def test_reserve_usage_refuses_and_turn_end_sees_every_turn(
    start_bot, telegram: FakeTelegram
) -> None:
    quota.ENDED.clear()
    await start_bot([QUOTA])
    assert (await telegram.reply_to("/spend", user_id=5)).text == "spent"
    assert (await telegram.reply_to("/spend", user_id=5)).text == "Your one call is spent."
    failed = await telegram.reply_to("/waste", user_id=5)
    assert failed.text == "Could not process the request, please try again later."
    await telegram.reply_to("/start", user_id=5)  # the same chat: the turns before are over
    assert quota.ENDED[:3] == [
        (5, {"quota.calls": 1}),
        (5, {}),  # refused before it metered anything
        (5, {"quota.calls": 0.5}),  # a failed turn still reports what it used
    ]
