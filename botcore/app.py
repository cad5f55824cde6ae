"""The running bot as plugins see it: config, settings, texts, commands, the OpenAI client, services."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from botcore.config import Config, ConfigError, StartupError, did_you_mean, validate
from botcore.delivery import Delivery
from botcore.i18n import Texts
from botcore.pipeline import Pipeline
from botcore.plugins import BUILTIN_PLUGINS, Plugins, available_plugins, maybe_await
from botcore.store import HistoryStore
from botcore.turn import TELEGRAM_DOWNLOAD_LIMIT
from botcore.types import Command, Handler

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from telegram import Bot

    from botcore.completions import Completions

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
"""Telegram's rule for command names."""


class App:
    """One bot: the loaded plugins and what they share. Built from a validated Config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.plugins = Plugins(config.bot.plugins)
        self.texts = Texts(config.bot.language)
        for _, texts in self.plugins.collect("register_texts"):
            self.texts.add(texts)
        if config.bot.language not in self.texts.languages:
            choices = ", ".join(self.texts.languages)
            raise ConfigError(
                f"bot.language: not a language botcore speaks (choose from {choices})"
            )
        self._settings: dict[type[BaseModel], BaseModel] = {}
        self._validate_plugin_tables()
        self.commands: dict[str, tuple[str, Command]] = {}
        self._collect_commands()
        self.handlers: list[tuple[str, Handler]] = [
            (plugin, handler)
            for plugin, handlers in self.plugins.collect("register_handlers")
            for handler in handlers
        ]
        self.telegram: Bot = None  # type: ignore[assignment]  # set by the runner before updates
        self.bot_id: int | None = None
        self.bot_username: str | None = None
        self.history: HistoryStore | None = None
        self._openai: AsyncOpenAI | None = None
        self._completions: Completions | None = None
        self.uses_openai = False
        self.delivery = Delivery(self)
        self.pipeline = Pipeline(self)

    def _validate_plugin_tables(self) -> None:
        tables = self.config.plugins
        loaded = set(self.plugins.names)
        known = loaded | set(available_plugins())
        for name in tables:
            if name not in known:
                raise ConfigError(
                    f"plugins.{name}: no such plugin{did_you_mean(name, sorted(known))}"
                )
            if name not in loaded:
                log.debug("[plugins.%s] is configured but the plugin is not enabled", name)
        models = dict(self.plugins.collect("settings_model"))
        for name in self.plugins.names:
            model = models.get(name)
            if model is None:
                if name in tables:
                    raise ConfigError(f"plugins.{name}: plugin {name!r} takes no settings")
                continue
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ConfigError(f"plugin {name!r}: settings_model must return a pydantic model")
            table = tables.get(name, {})
            if not isinstance(table, dict):
                raise ConfigError(f"plugins.{name}: must be a table")
            self._settings[model] = validate(model, table, prefix=("plugins", name))

    def _collect_commands(self) -> None:
        for plugin, commands in self.plugins.collect("register_commands", app=self):
            for command in commands:
                if not COMMAND_NAME.match(command.name):
                    raise ConfigError(
                        f"plugin {plugin!r}: command name {command.name!r} must be 1-32 of a-z, 0-9, _"
                    )
                owner = self.commands.get(command.name)
                if owner is not None and owner[0] not in BUILTIN_PLUGINS:
                    raise ConfigError(
                        f"command /{command.name} is registered by both {owner[0]!r} and {plugin!r}"
                    )
                self.commands[command.name] = (plugin, command)
        for info in self.plugins.infos:
            info.commands = [name for name, (p, _) in self.commands.items() if p == info.name]

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

    def visible_commands(self) -> list[Command]:
        """Commands for /help and the menu, built-ins first, then in plugin order."""
        return [command for _, command in self.commands.values() if not command.hidden]

    @property
    def download_limit(self) -> int | None:
        """20 MB on the cloud Bot API; none on a local Bot API server (bot.local_mode)."""
        return None if self.config.bot.local_mode else TELEGRAM_DOWNLOAD_LIMIT

    def require_openai(self) -> None:
        """Call from `startup` if the plugin uses `app.openai`: checks [openai] without building
        the client, whose import (~0.5 s) the runner overlaps with connecting to Telegram."""
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
            from botcore.completions import Completions

            aiohttp = self.config.bot.http_client == "aiohttp"
            self._completions = Completions(self.openai, use_aiohttp=aiohttp)
        return self._completions

    async def startup(self) -> None:
        """Run every plugin's startup hook, then find the history store."""
        for impl in self.plugins.impls("startup"):
            try:
                await maybe_await(impl(app=self))
            except StartupError:
                raise
            except Exception as exc:
                log.exception("plugin %s: startup failed", impl.plugin)
                raise StartupError(
                    f"plugin {impl.plugin!r}: startup failed: {type(exc).__name__}: {exc}"
                ) from None
        for impl in self.plugins.impls("history_store"):
            store = impl(app=self)
            if store is not None:
                self.history = store
                break

    async def shutdown(self) -> None:
        """Run every plugin's shutdown hook; one failing does not stop the others."""
        for impl in self.plugins.impls("shutdown"):
            try:
                await maybe_await(impl(app=self))
            except Exception:
                log.exception("plugin %s: shutdown failed", impl.plugin)
        if self._completions is not None:
            await self._completions.close()
            self._completions = None
        if self._openai is not None:
            await self._openai.close()
            self._openai = None
