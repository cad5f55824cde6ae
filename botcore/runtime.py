"""botcore's own runtime: the config, the plugins and what they registered, the store, the services.

Plugins never see it: hooks get botcore.App, a narrow view of it (botcore/app.py)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import re
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from botcore.app import App, PluginState
from botcore.breaker import Breaker, State
from botcore.buttons import Keyboards
from botcore.config import Config, ConfigError, StartupError, did_you_mean, loose_models, validate
from botcore.delivery import Delivery
from botcore.gate import Gate, ToolsSettings
from botcore.guard import Guard
from botcore.i18n import Texts, plugin_locales, read_locales
from botcore.logs import redact
from botcore.menu import publish_menu
from botcore.metrics import Health, Metrics
from botcore.pipeline import Pipeline
from botcore.plugins import BUILTIN_PLUGINS, CORE, Plugins, available_plugins, maybe_await
from botcore.store import HistoryStore, NewerSchema, Signal, Store, make_store
from botcore.tools import Tools
from botcore.turn import TELEGRAM_DOWNLOAD_LIMIT, Turn
from botcore.types import Command, Handler

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from telegram import Bot

    from botcore.completions import Completions

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
OVERRIDES = "config"
"""The store namespace of settings changed at run time: dotted path -> value (also the name of
the store lock that every change is made under)."""
SETTINGS_CHANGED = "settings"
"""The kind of the signal (Store.broadcast) that tells every instance to re-read the overrides."""
REFRESH_EVERY = 30.0
"""Seconds between re-reads of the overrides on a shared store: a signal is best effort, and an
instance that missed one is stale for this long at most."""
COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
"""Telegram's rule for command names."""


class Runtime:
    """One bot: the loaded plugins and what they share. Built from a validated Config."""

    def __init__(self, config: Config) -> None:
        """Load the plugins bot.toml names; what they register is collected by `load()`."""
        self.config = config
        limits = config.bot.breaker
        self.breaker = Breaker(
            limits.failures, limits.window, limits.cooldown, on_change=self._breaker_changed
        )
        """Per-plugin circuit breaker: counts failures; `plugins.state(name)` says who is off."""
        self.guard = Guard(self.breaker)
        """The one place plugin code is called and judged (botcore.guard)."""
        self.plugins = Plugins(config.bot.plugins, self.breaker)
        self.texts = Texts(config.bot.language)
        self._base_tables = config.plugins
        self._models: dict[str, type[BaseModel]] = {}
        self._settings: dict[type[BaseModel], BaseModel] = {}
        self._loaded = False
        self.overrides: dict[str, Any] = {}
        """Settings changed at run time (admin commands), by dotted path; see `override()`."""
        self._ignored: set[str] = set()
        """Stored overrides that no longer validate (logged once each, then skipped)."""
        self._applying = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None
        self._stopping = False
        self.commands: dict[str, tuple[str, Command]] = {}
        self.tools = Tools()
        """The functions plugins offer the chat model (register_tools), checked at start-up."""
        self.handlers: list[tuple[str, Handler]] = []
        self.telegram: Bot = None  # type: ignore[assignment]  # set by the runner before updates
        self.bot_id: int | None = None
        self.bot_username: str | None = None
        self.store: Store = make_store(config.store)
        """Shared state (conversations, records, counters, locks); see botcore.store.Store."""
        self.keyboards = Keyboards(self.store)
        """The inline buttons sent and not yet pressed (botcore.buttons)."""
        self.gate = Gate(ToolsSettings(), self.store)
        """Who may cause which tool to run, approvals, the audit (botcore.gate; [tools])."""
        self.history: HistoryStore | None = None
        self._openai: AsyncOpenAI | None = None
        self._completions: Completions | None = None
        self.uses_openai = False
        self.health = Health(config.bot)
        self.metrics = Metrics()
        """Counters and histograms: no-ops until a plugin's `metrics_recorder` provides one."""
        self._background: set[asyncio.Task[object]] = set()
        self.delivery = Delivery(self)
        self.pipeline = Pipeline(self)
        self.public = App(self)
        """The bot as plugins see it: what hooks get as `app` and turns as `turn.app`."""

    @classmethod
    async def create(cls, config: Config) -> Runtime:
        """An App with everything its plugins register collected (`load()`): ConfigError if bad."""
        app = cls(config)
        await app.load()
        return app

    async def load(self) -> None:
        """Collect what the plugins register (texts, settings models, commands, tools, handlers),
        awaiting `async def` hooks, and validate their settings; once (`startup` calls it too).
        Errors are ConfigErrors naming the plugin or the dotted path, before any network use."""
        if self._loaded:
            return
        self.texts = await self._load_texts()
        self._models = dict(await self.plugins.collect("settings_model"))
        self._settings = self._validate_plugin_tables(self.config.plugins)
        self._warn_loose_settings()
        await self._collect_commands()
        self.tools = await Tools.collect(self.plugins, self.serving, app=self.public)
        self.gate = self.tools.gate = Gate.from_config(
            self.config.tools,
            self.store,
            known=self.tools.by_name,
            sources=bool(self.tools.sources),
        )
        for info in self.plugins.infos:
            info.tools = self.tools.of(info.name)
        self.handlers = [
            (plugin, handler)
            for plugin, handlers in await self.plugins.collect("register_handlers")
            for handler in handlers
        ]
        self._loaded = True

    async def _load_texts(self) -> Texts:
        """The core's texts, then each plugin's locales folder and register_texts, then the
        operator's bot.locales_dir, which may add languages and overrides any text."""
        bot = self.config.bot
        texts = Texts(bot.language)
        for info in self.plugins.infos:
            folder = plugin_locales(info.module)
            if folder is not None:
                texts.add(read_locales(folder, f"plugin {info.name!r}: locales"))
        for _, table in await self.plugins.collect("register_texts"):
            texts.add(table)
        if bot.locales_dir is not None:
            if not bot.locales_dir.is_dir():
                raise ConfigError(f"bot.locales_dir: no such folder: {bot.locales_dir}")
            texts.add(read_locales(bot.locales_dir, "bot.locales_dir"), speak=True)
        if bot.language not in texts.languages:
            choices = ", ".join(texts.languages)
            raise ConfigError(
                f"bot.language: not a language botcore speaks (choose from {choices}); "
                "for another, add <language>.toml to bot.locales_dir"
            )
        return texts

    def _validate_plugin_tables(
        self, tables: dict[str, dict[str, Any]]
    ) -> dict[type[BaseModel], BaseModel]:
        """Each loaded plugin's table validated by its settings model: {model: settings}."""
        loaded = set(self.plugins.names)
        for name in tables:
            if name in loaded:
                continue
            known = loaded | set(available_plugins())  # scans every installed package
            if name not in known:
                raise ConfigError(
                    f"plugins.{name}: no such plugin{did_you_mean(name, sorted(known))}"
                )
            log.debug("[plugins.%s] is configured but the plugin is not enabled", name)
        validated: dict[type[BaseModel], BaseModel] = {}
        for name in self.plugins.names:
            model = self._models.get(name)
            if model is None:
                if name in tables:
                    raise ConfigError(f"plugins.{name}: plugin {name!r} takes no settings")
                continue
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ConfigError(f"plugin {name!r}: settings_model must return a pydantic model")
            table = tables.get(name, {})
            if not isinstance(table, dict):
                raise ConfigError(f"plugins.{name}: must be a table")
            validated[model] = validate(model, table, prefix=("plugins", name))
        return validated

    def _warn_loose_settings(self) -> None:
        """Name each plugin whose settings model ignores unknown keys: a typo in its table would
        pass `botcore check` and the bot would run without the setting the operator meant."""
        for name, model in self._models.items():
            loose = ", ".join(m.__qualname__ for m in loose_models(model))
            if loose:
                log.warning(
                    "plugin %r: its settings accept unknown keys, so a misspelt key in "
                    "[plugins.%s] is silently ignored; derive %s from botcore.StrictModel",
                    name, name, loose,
                )  # fmt: skip

    def _lay_over(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """bot.toml's plugin tables with `overrides` laid over them (raw, not validated)."""
        tables = copy.deepcopy(self._base_tables)
        for path, value in sorted(overrides.items()):  # a table before the keys beneath it
            *parents, last = path.split(".")[1:]
            node: dict[str, Any] = tables
            for part in parents:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
            node[last] = copy.deepcopy(value)
        return tables

    def _apply_overrides(self, overrides: dict[str, Any]) -> None:
        """Validate bot.toml's plugin tables with `overrides` laid over them, then use them."""
        tables = self._lay_over(overrides)
        self._settings = self._validate_plugin_tables(tables)
        self.config = self.config.model_copy(update={"plugins": tables})
        self.overrides = dict(overrides)

    def _valid(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """The stored overrides that validate together; each one that does not is logged (once)
        and skipped, so a stale override can neither keep the bot from starting nor block
        the changes made after it."""
        good: dict[str, Any] = {}
        for path, value in sorted(stored.items()):
            try:
                self._validate_plugin_tables(self._lay_over({**good, path: value}))
            except ConfigError as exc:
                if path not in self._ignored:
                    log.warning("ignoring the stored setting %s: %s", path, exc)
                    self._ignored.add(path)
                continue
            good[path] = value
        return good

    async def load_overrides(self) -> None:
        """Apply the overrides kept in the store (start-up, `botcore config`)."""
        if not self._models:
            return  # no plugin has settings to override
        async with self._applying:
            self._apply_overrides(self._valid(await self.store.scan(OVERRIDES)))

    async def refresh_overrides(self) -> bool:
        """Read the overrides from the store again and, if they changed, apply them and call
        every plugin's `settings_changed`: after a change made here, on a signal that another
        instance made one, and every REFRESH_EVERY seconds on a shared store. True if they
        changed."""
        if not self._models:
            return False
        async with self._applying:  # reads and applies in order: an older read never wins
            good = self._valid(await self.store.scan(OVERRIDES))
            if good == self.overrides:
                return False
            self._apply_overrides(good)
            await self.call_each("settings_changed")
        return True

    async def call_each(self, hook: str, **arguments: Any) -> None:
        """Call every plugin's `hook(app, **arguments)`, switched off or not; one that raises is
        logged with its name and the others still run."""
        for impl in self.plugins.impls(hook, disabled=True):
            try:
                await maybe_await(impl(app=self.public, **arguments))
            except Exception:
                log.exception("plugin %s: %s failed", impl.plugin, hook)

    async def override_many(self, changes: Mapping[str, Any]) -> None:
        """Change plugin settings at run time as one change (botcore.App.override says how a
        value is read): computed in order from what is stored, validated together and written
        under one lock (/allow unblocks and allows a user at once)."""
        for path in changes:
            parts = path.split(".")
            if len(parts) < 3 or parts[0] != "plugins" or not all(parts):
                raise ValueError(f"not a plugin setting: {path!r} (plugins.<name>.<key>...)")
        menu = self._menu()
        async with self.store.lock(OVERRIDES):
            stored = await self.store.scan(OVERRIDES)
            wanted = self._valid(stored)
            written: dict[str, Any] = {}
            for path, value in changes.items():
                current = _lookup(self._lay_over(wanted), path.split(".")[1:])
                new = value(copy.deepcopy(current)) if callable(value) else value
                if callable(value) and new == current:
                    continue
                for key in [*stored, *wanted, *written]:
                    if key == path or key.startswith(path + "."):
                        wanted.pop(key, None)
                        written[key] = None
                if new is not None:
                    wanted[path] = written[path] = new
            if not written:
                return
            self._validate_plugin_tables(self._lay_over(wanted))  # ConfigError: nothing stored
            for key, new in written.items():
                await self.store.put(OVERRIDES, key, new)
        await self.refresh_overrides()
        if self.store.shared:
            await self._signal({"kind": SETTINGS_CHANGED})
        if self._menu() != menu and self.telegram is not None:
            self.in_background(self._republish_menu())

    def _menu(self) -> list[tuple[str, bool]]:
        """What Telegram's command menu shows (command names, admin or not)."""
        return [(c.name, c.admin) for c in self.visible_commands(admin=True)]

    async def _republish_menu(self) -> None:
        """Set Telegram's menu again after a change switched commands on or off. Once, by the
        instance that made the change (the menu is the bot's, not an instance's), and under a
        lock with the newest settings: of two changes in a row, the last one's menu stays."""
        try:
            async with self.store.lock(f"{OVERRIDES}:menu"):
                await self.refresh_overrides()
                await publish_menu(self)
        except Exception as exc:
            log.warning("could not update the command menu: %s", type(exc).__name__)

    async def _signal(self, message: Signal) -> None:
        """Tell the other instances; if the store cannot, they catch up within REFRESH_EVERY."""
        try:
            await self.store.broadcast(message)
        except Exception as exc:
            log.warning("store: cannot signal the other instances: %s", type(exc).__name__)

    def _on_signal(self, message: Signal) -> None:
        if message.get("kind") == SETTINGS_CHANGED and not self._stopping:
            self.in_background(self._refresh("signal"))

    async def _refresh(self, why: str) -> None:
        try:
            if await self.refresh_overrides():
                log.info("settings changed in chat applied (%s)", why)
        except Exception as exc:  # the store is down: the next signal or period tries again
            log.warning("store: cannot read the settings changed in chat: %s", type(exc).__name__)

    async def _refresh_now_and_then(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            await self._refresh("periodic re-read")

    def effective_config(self) -> dict[str, Any]:
        """bot.toml with the stored overrides and every default filled in, secrets masked
        (`botcore config`); plugin tables as their settings models see them."""
        shown: dict[str, Any] = self.config.model_dump(mode="json", exclude={"plugins"})
        tables: dict[str, Any] = {}
        for name in self.plugins.names:
            model = self._models.get(name)
            if model is not None:
                tables[name] = self._settings[model].model_dump(mode="json", by_alias=True)
        shown["plugins"] = tables
        return shown

    async def _collect_commands(self) -> None:
        """Every plugin's commands, checked; /help lists the built-ins' first, then the core's
        own /cancel (which a plugin may take over), then the rest in plugin order."""
        cancel = Command("cancel", _nothing_to_cancel, help=self.texts.translations("cancel_help"))
        self.commands["cancel"] = (CORE, cancel)
        for plugin, commands in await self.plugins.collect("register_commands", app=self.public):
            for command in commands:
                if not COMMAND_NAME.match(command.name):
                    raise ConfigError(
                        f"plugin {plugin!r}: command name {command.name!r} must be 1-32 of a-z, 0-9, _"
                    )
                owner = self.commands.get(command.name)
                if owner is not None and owner[0] not in (CORE, *BUILTIN_PLUGINS):
                    raise ConfigError(
                        f"command /{command.name} is registered by both {owner[0]!r} and {plugin!r}"
                    )
                self.commands[command.name] = (plugin, command)
        first = [name for name, (p, _) in self.commands.items() if p in BUILTIN_PLUGINS]
        self.commands = {name: self.commands[name] for name in [*first, *self.commands]}
        for info in self.plugins.infos:
            info.commands = [name for name, (p, _) in self.commands.items() if p == info.name]

    def _breaker_changed(self, plugin: str, state: State) -> None:
        """A plugin was switched off (or is back): log it and tell the admins, once."""
        limits = self.config.bot.breaker
        error = self.breaker.plugins[plugin].last_error
        if state == "open":
            log.error(
                "plugin %s switched off for %.0f s after %d failures within %.0f s (last: %s)",
                plugin, limits.cooldown, limits.failures, limits.window, error,
            )  # fmt: skip
        else:
            log.warning("plugin %s works again", plugin)
        if not self.config.bot.admins or self.telegram is None:
            return
        text = self.t(
            "breaker.opened" if state == "open" else "breaker.closed",
            plugin=plugin,
            failures=limits.failures,
            window=f"{limits.window:g}",
            cooldown=f"{limits.cooldown:g}",
            error=error,
        )
        self.in_background(self.tell_admins(text))

    def in_background(self, work: Coroutine[Any, Any, object]) -> None:
        """Run `work` as a task of its own, awaited at shutdown (before the store closes)."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def tell_admins(self, text: str) -> None:
        """Send `text` to every user in bot.admins; one who cannot be reached is logged and skipped."""
        for admin in self.config.bot.admins:
            try:
                await self.delivery.api(self.telegram.send_message, admin, text)
            except Exception as exc:
                log.warning("could not alert admin %s: %s", admin, type(exc).__name__)

    def settings(self, model: type[M]) -> M:
        """The validated `[plugins.<name>]` table of the plugin whose settings_model is `model`."""
        found = self._settings.get(model)
        if found is None:
            raise LookupError(f"no loaded plugin declares the settings model {model.__name__}")
        assert isinstance(found, model)
        return found

    def t(self, key: str, language: str | None = None, **values: Any) -> str:
        """A user-facing text; see botcore.i18n.Texts."""
        return self.texts.get(key, language or self.config.bot.language, **values)

    def serving(self, plugin: str) -> bool:
        """Whether a plugin's code may run now: not switched off, not cooling down after failures."""
        return self.plugins.serving(plugin)

    def plugin_state(self, name: str) -> PluginState:
        """Whether a loaded plugin runs now, and if not, why (KeyError if none is called `name`)."""
        if name not in self.plugins.names:
            raise KeyError(name)
        return self.plugins.state(name)

    def switch_plugin(self, name: str, on: bool) -> None:
        """Switch a loaded plugin on (out of a cool-down too) or off, on this instance."""
        if on:
            self.plugins.enable(name)
        else:
            self.plugins.disable(name)

    def visible_commands(self, *, admin: bool = False) -> list[Command]:
        """Commands for /help and the menu, built-ins first, then in plugin order; admin commands
        only with `admin=True`, and none of a plugin that is switched off."""
        return [
            command
            for plugin, command in self.commands.values()
            if not command.hidden and (admin or not command.admin) and self.plugins.enabled(plugin)
        ]

    @property
    def download_limit(self) -> int | None:
        """20 MB on the cloud Bot API; none on a local Bot API server (bot.local_mode)."""
        return None if self.config.bot.local_mode else TELEGRAM_DOWNLOAD_LIMIT

    def require_openai(self) -> None:
        """Call from `startup` if the plugin uses `app.openai` or `app.completions`: checks
        [openai] without building the SDK client, whose import (~0.5 s) the runner does once
        the bot is idle after start-up (see Runner.start)."""
        self.uses_openai = True
        if self.config.openai.api_key is None:
            raise ConfigError(
                'openai.api_key: required by the enabled plugins; set api_key = "${OPENAI_API_KEY}"'
            )

    @property
    def openai(self) -> AsyncOpenAI:
        """The shared OpenAI-compatible client from [openai]; created on first use."""
        if self._openai is None:
            self.require_openai()
            settings = self.config.openai
            assert settings.api_key is not None
            from openai import (
                AsyncOpenAI,
                DefaultAioHttpClient,
            )  # here: a bot without AI starts faster

            aiohttp = self.config.bot.http_client == "aiohttp"
            self._openai = AsyncOpenAI(
                http_client=DefaultAioHttpClient() if aiohttp else None,
                api_key=settings.api_key.get_secret_value(),
                base_url=settings.base_url,
                timeout=settings.timeout,
                max_retries=settings.max_retries,
            )
        return self._openai

    @property
    def completions(self) -> Completions:
        """Chat completions on the [openai] endpoint, cheaper per chunk than the SDK's
        `chat.completions.create` and raising the same errors (see botcore.completions)."""
        if self._completions is None:
            from botcore.completions import Completions, Endpoint

            self.require_openai()
            aiohttp = self.config.bot.http_client == "aiohttp"
            endpoint = Endpoint.from_settings(self.config.openai)
            self._completions = Completions(endpoint, lambda: self.openai, use_aiohttp=aiohttp)
        return self._completions

    async def startup(self) -> None:
        """Collect what plugins register (`load`), open the store, run every plugin's startup
        hook, then find the history store."""
        await self.load()
        try:
            await self.store.open()
        except NewerSchema as exc:
            raise StartupError(f"store: {exc}") from None
        except Exception as exc:
            reason = redact(f"{type(exc).__name__}: {exc}", self.config.secrets())
            raise StartupError(f"store: cannot open: {reason}") from None
        await self.load_overrides()
        await self.pipeline.start()
        for impl in self.plugins.impls("startup", disabled=True):
            try:
                await maybe_await(impl(app=self.public))
            except StartupError:
                raise
            except Exception as exc:
                log.exception("plugin %s: startup failed", impl.plugin)
                raise StartupError(
                    f"plugin {impl.plugin!r}: startup failed: {type(exc).__name__}: {exc}"
                ) from None
        for impl in self.plugins.impls("history_store", disabled=True):
            try:
                store = await maybe_await(impl(app=self.public))
            except Exception as exc:
                log.exception("plugin %s: history_store failed", impl.plugin)
                raise StartupError(
                    f"plugin {impl.plugin!r}: history_store failed: {type(exc).__name__}: {exc}"
                ) from None
            if store is not None:
                self.history = store
                break
        for impl in self.plugins.impls("metrics_recorder", disabled=True):
            try:
                recorder = await maybe_await(impl(app=self.public))
            except Exception as exc:
                raise StartupError(
                    f"plugin {impl.plugin!r}: metrics_recorder failed: {type(exc).__name__}: {exc}"
                ) from None
            if recorder is not None:
                self.metrics = recorder
                break
        if self.store.shared and self._models:
            # Another instance's change reaches this one by a signal, and by a re-read now and
            # then if the signal was lost; one made between load_overrides and now, by this one.
            await self.store.listen(self._on_signal)
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_now_and_then())
            await self._refresh("start-up")

    async def shutdown(self) -> None:
        """Run every plugin's shutdown hook; one failing does not stop the others."""
        self._stopping = True  # a signal heard from now on starts no work
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.call_each("shutdown")
        await self.keyboards.close()
        if self._completions is not None:
            await self._completions.close()
            self._completions = None
        if self._openai is not None:
            await self._openai.close()
            self._openai = None
        try:
            await self.store.close()
        except Exception:
            log.exception("store: close failed")


def _lookup(tables: dict[str, Any], parts: list[str]) -> Any:
    """The raw value at a path in the plugin tables, or None."""
    node: Any = tables
    for part in parts:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return copy.deepcopy(node)


def _nothing_to_cancel(turn: Turn) -> str:
    """/cancel is answered by the pipeline before it is routed; this is only /help's entry."""
    return turn.t("nothing_to_cancel")
