"""The hooks no first-party feature test covers from a plugin's side: texts, the lifecycle, and a
history store of the plugin's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sample_plugins import eager, notebook, quota

from botcore.config import ConfigError, StartupError
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


EAGER = "sample_plugins.eager"


async def test_async_start_up_hooks_are_awaited_once_at_start_up(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """hookspecs.py promises any hook may be `async def`: the registration hooks, settings_model
    and history_store included."""
    bot = await start_bot(["chat", EAGER], settings={EAGER: {"greeting": "hi"}})
    assert bot.app.history is eager.STORES[bot.app]  # the store, not a coroutine
    assert (await telegram.reply_to("/greet")).text == "hi, 42!"
    menu = {c["command"]: c["description"] for c in telegram.commands[("default", "ru")]}
    assert menu["greet"] == "Поздороваться"
    openai_server.script_chat("Noon.")
    assert (await telegram.reply_to("what time is it?")).text == "Noon."  # chat answers first
    (request,) = openai_server.chat_requests
    assert [t["function"]["name"] for t in request["tools"]] == ["clock"]
    assert [m["content"] for m in eager.STORES[bot.app].chats[42]] == ["what time is it?", "Noon."]


async def test_an_async_settings_model_validates_the_table(start_bot) -> None:
    with pytest.raises(ConfigError, match=rf"plugins\.{EAGER}\.greting"):
        await start_bot([EAGER], settings={EAGER: {"greting": "hi"}})


@pytest.mark.parametrize(
    ("plugin", "hook", "kind"),
    [
        ("sample_plugins.wrapping", "pre_message", "wrapper=True"),
        ("sample_plugins.old_wrapping", "turn_end", "hookwrapper=True"),
    ],
)
async def test_a_hook_wrapper_is_a_start_up_error_naming_plugin_and_hook(
    start_bot, plugin: str, hook: str, kind: str
) -> None:
    """botcore calls each plugin on its own (to await and isolate it): a wrapper would never wrap."""
    with pytest.raises(ConfigError) as refused:
        await start_bot([plugin])
    assert str(refused.value) == (
        f"plugin {plugin!r}: {hook} is a hook wrapper (@hookimpl({kind})), which botcore "
        "does not run; implement the hook as a plain function"
    )
