"""The running bot as a plugin sees it: the one object hooks get as `app` (and turns as `turn.app`).

Everything here is plugin API, documented in docs/plugin-guide.md beside the hooks. The machinery
behind it (the pipeline, delivery, the registries, the circuit breaker) is botcore's own and out of
plugins' reach, so it can change without breaking a plugin.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from botcore.completions import Completions
    from botcore.gate import AuditEntry
    from botcore.metrics import Metrics
    from botcore.runtime import Runtime
    from botcore.store import HistoryStore, Store
    from botcore.tools import Tools
    from botcore.types import Command

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class PluginState:
    """Whether a plugin's code runs now, and if not, why: switched `off` by an admin, or
    `cooling_down` after repeated failures (its circuit breaker), for `seconds_left` more."""

    state: Literal["on", "off", "cooling_down"]
    seconds_left: float | None = None


@dataclass(frozen=True)
class PluginDescription:
    """What `botcore plugins` and /plugins show about one loaded plugin."""

    name: str
    version: str
    source: str
    """Where it came from: built-in, first-party, an installed package, a module path."""
    commands: tuple[str, ...]
    tools: tuple[str, ...]


class App:
    """The running bot as plugins see it: settings, texts, the store, the model client, admins."""

    __slots__ = ("__weakref__", "_runtime")

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    # Settings and texts

    def settings(self, model: type[M]) -> M:
        """The validated `[plugins.<name>]` table of the plugin whose settings_model is `model`,
        with the settings changed in chat laid over it."""
        return self._runtime.settings(model)

    def t(self, key: str, language: str | None = None, **values: Any) -> str:
        """A user-facing text in `language` (the bot's default if None); see `turn.t`."""
        return self._runtime.t(key, language, **values)

    def translations(self, key: str) -> dict[str, str]:
        """A text in every language, e.g. for `Command(help=...)`: {"en": "…", "ru": "…"}."""
        return self._runtime.texts.translations(key)

    @property
    def language(self) -> str:
        """The bot's default language (bot.language)."""
        return self._runtime.config.bot.language

    @property
    def admins(self) -> frozenset[int]:
        """The user ids in bot.admins."""
        return frozenset(self._runtime.config.bot.admins)

    @property
    def overrides(self) -> Mapping[str, Any]:
        """The settings changed in chat now in effect, by dotted path (read-only)."""
        return dict(self._runtime.overrides)

    async def override(self, path: str, value: Any) -> None:
        """Change a plugin setting at run time, e.g. ("plugins.access.users", [42]): validated
        (ConfigError if bad), stored, in effect at once here and within a second on every
        instance sharing the store, and applied again at every start.

        `value` may be a function of the current value (the stored override, else bot.toml's;
        None if unset), called under the store's lock: a read-modify-write that no other change
        can come between; returning the current value unchanged stores nothing. None removes the
        override (and those beneath it): bot.toml's value is back.
        """
        await self._runtime.override_many({path: value})

    async def override_many(self, changes: Mapping[str, Any]) -> None:
        """Several `override`s as one change, validated together and written under one lock."""
        await self._runtime.override_many(changes)

    # Storage

    @property
    def store(self) -> Store:
        """Shared state: records, counters, locks and signals (see botcore.Store); one per bot,
        shared by every instance when it is PostgreSQL or Redis."""
        return self._runtime.store

    @property
    def history(self) -> HistoryStore | None:
        """The conversation store a `history_store` hook provided (the history plugin), if any."""
        return self._runtime.history

    # The model

    def require_openai(self) -> None:
        """Call from `startup` if the plugin uses `openai` or `completions`: a missing [openai]
        api_key is then a start-up error, not a failure at the first message."""
        self._runtime.require_openai()

    @property
    def openai(self) -> AsyncOpenAI:
        """The shared OpenAI SDK client from [openai] (images, audio…); created on first use."""
        return self._runtime.openai

    @property
    def completions(self) -> Completions:
        """Chat completions on the [openai] endpoint: faster than the SDK's, same errors."""
        return self._runtime.completions

    @property
    def tools(self) -> Tools:
        """The functions plugins offer the chat model (register_tools), checked at start-up."""
        return self._runtime.tools

    async def tool_calls(self, limit: int = 20) -> list[AuditEntry]:
        """The newest `limit` tool calls the gate recorded, newest first (see [tools])."""
        return await self._runtime.gate.recent(limit)

    # Telegram, plugins, operators

    @property
    def bot_username(self) -> str | None:
        """The bot's @username without the @ (known once connected to Telegram)."""
        return self._runtime.bot_username

    def commands(self, *, admin: bool = False) -> list[Command]:
        """The commands /help and Telegram's menu show, in plugin order: admin commands only with
        `admin=True`, none of a plugin that is switched off."""
        return self._runtime.visible_commands(admin=admin)

    @property
    def plugins(self) -> list[PluginDescription]:
        """The loaded plugins: built-ins first, then bot.toml's order."""
        return [
            PluginDescription(i.name, i.version, i.source, tuple(i.commands), tuple(i.tools))
            for i in self._runtime.plugins.infos
        ]

    def plugin_state(self, name: str) -> PluginState:
        """Whether plugin `name` runs now, and if not, why (KeyError if it is not loaded)."""
        return self._runtime.plugin_state(name)

    def switch_plugin(self, name: str, on: bool) -> None:
        """Switch a loaded plugin off (its commands, handlers and turn hooks are skipped; startup
        and shutdown still run) or back on, out of a cool-down too. For this instance only: the
        admin plugin keeps the switch in a setting so that every instance follows it."""
        self._runtime.switch_plugin(name, on)

    async def refund_stars(self, user_id: int, charge_id: str) -> None:
        """Give back a user's payment in Telegram Stars (refundStarPayment), by its
        `telegram_payment_charge_id`. Telegram's refusal is `telegram.error.BadRequest` with its
        description, e.g. "Bad Request: CHARGE_ALREADY_REFUNDED"."""
        await self._runtime.telegram.refund_star_payment(user_id, charge_id)

    async def cancel_subscription(
        self, user_id: int, charge_id: str, canceled: bool = True
    ) -> None:
        """Stop renewing a user's Stars subscription (editUserStarSubscription): it stays paid to
        the end of its period. `canceled=False` lets the user renew it again."""
        await self._runtime.telegram.edit_user_star_subscription(user_id, charge_id, canceled)

    async def tell_admins(self, text: str) -> None:
        """Send `text` to every user in bot.admins; one who cannot be reached is logged."""
        await self._runtime.tell_admins(text)

    def in_background(self, work: Coroutine[Any, Any, object]) -> None:
        """Run `work` as a task of its own, awaited at shutdown (before the store closes)."""
        self._runtime.in_background(work)

    @property
    def metrics(self) -> Metrics:
        """Counters and histograms (no-ops unless a plugin records them: the metrics plugin)."""
        return self._runtime.metrics

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the bot is serving, and the facts behind it: what GET /healthz?verbose shows
        (status, reason, mode, uptime_s, updates, last_update_age_s, telegram_ok_age_s...)."""
        return self._runtime.health.check()

    def __repr__(self) -> str:
        return f"<botcore.App plugins={[i.name for i in self._runtime.plugins.infos]}>"
