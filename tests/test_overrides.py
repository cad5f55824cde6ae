"""Settings changed in chat (`App.override`): a read-modify-write against the store, applied by
every instance. Two Apps on one store stand for two bot processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from botcore_access import Settings as Access
from sample_plugins import watcher

import botcore.runtime
from botcore.config import Config, ConfigError, validate
from botcore.runner import ALLOWED_UPDATES
from botcore.runtime import Runtime
from botcore.store import Signal, Store
from botcore.stores.memory import MemoryStore
from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness, RunningBot

ADMIN = 1
PLUGINS = ["access", "admin", "usage", "sample_plugins.watcher"]


def config(bot_harness: BotHarness, path: Path) -> Config:
    return validate(
        Config,
        bot_harness.config_dict(
            PLUGINS, bot={"admins": [ADMIN]}, store={"backend": "sqlite", "path": str(path)}
        ),
    )


async def two_apps(
    bot_harness: BotHarness, tmp_path: Path, store: Store | None = None
) -> tuple[Runtime, Runtime]:
    """Two started apps on one SQLite file (or on `store`, one object both use)."""
    apps = (
        Runtime(config(bot_harness, tmp_path / "bot.db")),
        Runtime(config(bot_harness, tmp_path / "bot.db")),
    )
    for app in apps:
        if store is not None:
            app.store = store
        await app.startup()
    return apps


@pytest.fixture
async def pair(bot_harness: BotHarness, tmp_path: Path) -> AsyncIterator[tuple[Runtime, Runtime]]:
    watcher.SEEN.clear()
    a, b = await two_apps(bot_harness, tmp_path)
    yield a, b
    await a.shutdown()
    await b.shutdown()


def adding(n: int) -> Callable[[list[int] | None], list[int]]:
    return lambda ids: sorted({*(ids or []), n})


async def test_a_change_starts_from_what_is_stored_not_from_this_instances_copy(
    pair: tuple[Runtime, Runtime],
) -> None:
    a, b = pair
    await a.public.override("plugins.access.blocked", adding(7))
    assert b.settings(Access).blocked == []  # b has not read the store again yet
    await b.public.override("plugins.access.blocked", adding(8))
    assert await b.store.scan("config") == {"plugins.access.blocked": [7, 8]}
    assert b.settings(Access).blocked == [7, 8]
    assert a.settings(Access).blocked == [7]
    assert await a.refresh_overrides() is True  # what a signal or the periodic re-read does
    assert a.settings(Access).blocked == [7, 8]
    assert await a.refresh_overrides() is False  # nothing new: plugins are not bothered
    blocked = {"plugins.access.blocked": [7, 8]}
    calls = [
        (id(a.public), {"plugins.access.blocked": [7]}),
        (id(b.public), blocked),
        (id(a.public), blocked),
    ]
    assert calls == watcher.SEEN


async def test_changes_are_validated_together_and_a_bad_one_stores_nothing(
    pair: tuple[Runtime, Runtime],
) -> None:
    a, _ = pair
    with pytest.raises(ConfigError, match="remind_hours"):
        await a.override_many({"plugins.access.users": [5], "plugins.access.remind_hours": -1})
    assert await a.store.scan("config") == {}
    assert a.settings(Access).users == []
    with pytest.raises(ValueError, match="not a plugin setting"):
        await a.override_many({"plugins.access.users": [5], "bot.admins": [5]})
    assert await a.store.scan("config") == {}


async def test_a_function_that_leaves_the_value_as_it_is_stores_nothing(
    pair: tuple[Runtime, Runtime],
) -> None:
    a, _ = pair
    seen: list[object] = []

    def same(value: object) -> object:
        seen.append(value)
        return value

    await a.override_many({"plugins.access.users": same, "plugins.access.open": same})
    assert seen == [None, None]  # neither is set in bot.toml
    assert await a.store.scan("config") == {}
    assert watcher.SEEN == []


async def test_later_changes_in_one_call_see_the_earlier_ones(
    pair: tuple[Runtime, Runtime],
) -> None:
    a, _ = pair
    await a.override_many(
        {
            "plugins.usage.users.8.daily": {"cost": 1.0},
            "plugins.usage.users.8": lambda user: {**user, "monthly": {"cost": 9.0}},
        }
    )
    assert await a.store.scan("config") == {
        "plugins.usage.users.8": {"daily": {"cost": 1.0}, "monthly": {"cost": 9.0}}
    }
    await a.public.override("plugins.usage.users.8.daily", {"cost": 2.0})
    await a.public.override("plugins.usage.users.8", None)  # and every setting beneath it
    assert await a.store.scan("config") == {}


async def test_a_stale_stored_setting_is_skipped_once_logged_and_blocks_no_change(
    pair: tuple[Runtime, Runtime], caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = pair
    await a.store.put("config", "plugins.access.remind_hours", "never")
    await a.public.override("plugins.access.blocked", adding(7))
    await a.refresh_overrides()
    await a.public.override("plugins.access.blocked", adding(8))
    assert a.settings(Access).blocked == [7, 8]
    assert a.settings(Access).remind_hours == 24
    warnings = [r for r in caplog.records if "ignoring the stored setting" in r.getMessage()]
    assert len(warnings) == 1


class Shared(MemoryStore):
    """One store object that two apps use, as two processes use one PostgreSQL or Redis: its
    signals reach both (unless `lose` drops them, as a lost connection would)."""

    shared = True
    lose = False

    async def broadcast(self, message: Signal) -> None:
        if not self.lose:
            await super().broadcast(message)


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
async def shared_pair(
    bot_harness: BotHarness, tmp_path: Path
) -> AsyncIterator[tuple[Runtime, Runtime, Shared]]:
    watcher.SEEN.clear()
    store = Shared()
    a, b = await two_apps(bot_harness, tmp_path, store)
    yield a, b, store
    await a.shutdown()
    await b.shutdown()


async def test_another_instance_applies_a_change_when_signalled(
    shared_pair: tuple[Runtime, Runtime, Shared],
) -> None:
    a, b, _ = shared_pair
    await a.public.override("plugins.admin.disabled", lambda names: [*(names or []), "usage"])
    await until(lambda: not b.plugins.enabled("usage"), "b switched usage off")
    assert b.settings(Access).blocked == []
    await b.public.override("plugins.access.blocked", adding(7))
    await a.public.override("plugins.admin.disabled", lambda _: [])
    await until(lambda: b.plugins.enabled("usage"), "b switched usage on")
    assert a.settings(Access).blocked == [7] and a.plugins.enabled("usage")


async def test_a_lost_signal_is_made_up_for_by_reading_again_now_and_then(
    bot_harness: BotHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(botcore.runtime, "REFRESH_EVERY", 0.05)
    store = Shared()
    store.lose = True
    a, b = await two_apps(bot_harness, tmp_path, store)
    try:
        await a.public.override("plugins.access.blocked", adding(7))
        await until(lambda: b.settings(Access).blocked == [7], "b read the store again")
    finally:
        await a.shutdown()
        await b.shutdown()


# The same through chat, with two polling bots on one SQLite file taking turns.

BLOCKED = "Sorry, you may not use this bot."


async def pause(bot: RunningBot) -> None:
    """Stop taking updates (the bot keeps running): the other bot gets the next ones."""
    updater = bot.runner.application.updater
    assert updater is not None
    await updater.stop()


async def resume(bot: RunningBot) -> None:
    updater = bot.runner.application.updater
    assert updater is not None
    await updater.start_polling(
        poll_interval=0.0,
        timeout=bot.runtime.config.bot.poll_timeout,
        allowed_updates=ALLOWED_UPDATES,
    )


async def test_deny_on_one_bot_then_allow_on_another_leaves_the_user_allowed_on_both(
    bot_harness: BotHarness, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    kwargs: dict[str, Any] = {
        "bot": {"admins": [ADMIN]},
        "store": {"backend": "sqlite", "path": "bot.db"},
        "settings": {"chat": {"stream": False}},
    }
    plugins = ["access", "admin", "chat"]
    first = await bot_harness.start(plugins, **kwargs)
    second = await bot_harness.start(plugins, **kwargs)
    await pause(second)
    reply = await telegram.reply_to("/deny 7", user_id=ADMIN)
    assert reply.text == "User 7 may no longer use the bot."
    assert (await telegram.reply_to("hi", user_id=7)).text == BLOCKED
    await pause(first)
    await resume(second)  # its settings are as they were before the /deny
    reply = await telegram.reply_to("/allow 7", user_id=ADMIN)
    assert reply.text == "User 7 may use the bot now."
    assert (await telegram.reply_to("one", user_id=7)).text == "echo: one"
    stored = {"plugins.access.blocked": [], "plugins.access.users": [7]}
    assert await second.app.store.scan("config") == stored
    await pause(second)
    await resume(first)
    await first.runtime.refresh_overrides()  # a signal or the periodic re-read, on a shared store
    assert (await telegram.reply_to("two", user_id=7)).text == "echo: two"
    await first.stop()
    await second.stop()
    third = await bot_harness.start(plugins, **kwargs)
    assert (await telegram.reply_to("three", user_id=7)).text == "echo: three"
    assert await third.app.store.scan("config") == stored
    assert [r["messages"][-1]["content"] for r in openai_server.chat_requests] == [
        "one",
        "two",
        "three",
    ]
