"""admin: /plugins lists the plugins and their state; /enable and /disable switch one at run time;
/audit shows the recent tool calls (who, where, which tool, the outcome: botcore's tool gate).

The commands are for `bot.admins` only (the core refuses everyone else). What is switched off is
the `disabled` setting: changed in chat it is kept in the store (`app.override`), applied at every
start and shown by `botcore config`; every instance sharing the store follows it. A plugin
switched off keeps its state; its commands answer that they are off, its handlers and message
hooks are skipped.
"""

from __future__ import annotations

import difflib
import logging
import math
import time
from collections.abc import Callable, Sequence

from pydantic import Field

from botcore import App, Command, ConfigError, StrictModel, Turn, UserError, hookimpl

PLUGIN = "admin"
log = logging.getLogger(__name__)


class Settings(StrictModel):
    """[plugins.admin]"""

    disabled: list[str] = Field(default_factory=list)
    """Plugins loaded but switched off; /enable switches one on."""


@hookimpl
def settings_model() -> type[Settings]:
    return Settings


@hookimpl
def register_texts() -> dict[str, dict[str, str]]:
    return {
        "en": {
            "admin.plugins": "List the plugins and their state",
            "admin.enable": "Switch a plugin on: /enable image",
            "admin.disable": "Switch a plugin off: /disable image",
            "admin.on": "on",
            "admin.off": "off (switched off by an admin)",
            "admin.cooling_down": "off for {seconds} s more after repeated failures",
            "admin.usage": "Name a plugin: /{command} {example}",
            "admin.unknown": "There is no plugin {name!r}{hint}.",
            "admin.keep": "{name} cannot be switched off: it is needed to manage the bot.",
            "admin.enabled": "{name} is on.",
            "admin.disabled": "{name} is off. /enable {name} switches it back on.",
            "admin.audit": "Recent tool calls: /audit 50 shows more",
            "admin.audit_title": "Tool calls, newest first (UTC):",
            "admin.audit_empty": "No tool calls recorded yet.",
            "admin.audit_line": "{time} · {tool} · {outcome} · user {user} · chat {chat} · "
            "args #{digest}",
            "admin.audit.ok": "ok",
            "admin.audit.error": "failed",
            "admin.audit.denied": "denied by the user",
            "admin.audit.expired": "not approved in time",
            "admin.audit.cancelled": "stopped",
            "admin.audit.refused:who": "refused: not allowed",
            "admin.audit.refused:chat_type": "refused: not in this chat type",
            "admin.audit.refused:rate": "refused: rate limit",
            "admin.audit.anonymous": "not asked: sent on behalf of a chat",
        },
        "ru": {
            "admin.plugins": "Список плагинов и их состояние",
            "admin.enable": "Включить плагин: /enable image",
            "admin.disable": "Выключить плагин: /disable image",
            "admin.on": "вкл.",
            "admin.off": "выкл. (выключен администратором)",
            "admin.cooling_down": "выкл. ещё на {seconds} с после повторных сбоев",
            "admin.usage": "Укажите плагин: /{command} {example}",
            "admin.unknown": "Плагина {name!r} нет{hint}.",
            "admin.keep": "{name} нельзя выключить: он нужен для управления ботом.",
            "admin.enabled": "{name} включён.",
            "admin.disabled": "{name} выключен. /enable {name} включит его снова.",
            "admin.audit": "Последние вызовы инструментов: /audit 50 покажет больше",
            "admin.audit_title": "Вызовы инструментов, сначала новые (UTC):",
            "admin.audit_empty": "Вызовов инструментов пока не было.",
            "admin.audit_line": "{time} · {tool} · {outcome} · пользователь {user} · чат {chat} · "
            "арг. #{digest}",
            "admin.audit.ok": "выполнен",
            "admin.audit.error": "ошибка",
            "admin.audit.denied": "отклонён пользователем",
            "admin.audit.expired": "не подтверждён вовремя",
            "admin.audit.cancelled": "остановлен",
            "admin.audit.refused:who": "отказ: нет доступа",
            "admin.audit.refused:chat_type": "отказ: не в этом типе чата",
            "admin.audit.refused:rate": "отказ: превышен лимит",
            "admin.audit.anonymous": "не спрошен: от имени чата",
        },
    }


@hookimpl
def register_commands(app: App) -> Sequence[Command]:
    return [
        Command("plugins", plugins, help=app.translations("admin.plugins"), admin=True),
        Command("enable", enable, help=app.translations("admin.enable"), admin=True),
        Command("disable", disable, help=app.translations("admin.disable"), admin=True),
        Command("audit", audit, help=app.translations("admin.audit"), admin=True),
    ]


@hookimpl
def startup(app: App) -> None:
    if "plugins.admin.disabled" not in app.overrides:  # bot.toml's value: a mistake stops start-up
        for name in app.settings(Settings).disabled:
            if name in _kept(app):
                raise ConfigError(f"plugins.admin.disabled: {name!r} cannot be switched off")
            if name not in _names(app):
                hint = did_you_mean(name, _names(app))
                raise ConfigError(f"plugins.admin.disabled: no loaded plugin {name!r}{hint}")
    _follow(app)


@hookimpl
def settings_changed(app: App) -> None:
    _follow(app)


def _follow(app: App) -> None:
    """Switch plugins off and on as the `disabled` setting says, wherever it was changed: this
    instance's /disable, another's, or bot.toml's value at start-up."""
    disabled = app.settings(Settings).disabled
    names = _names(app)
    for name in disabled:
        if name not in names:
            log.warning("plugin %r was switched off in chat but is no longer loaded", name)
    for name in set(names) - _kept(app):
        off = app.plugin_state(name).state == "off"
        if name in disabled and not off:
            app.switch_plugin(name, on=False)
            log.info("plugin %s is switched off", name)
        elif name not in disabled and off:
            app.switch_plugin(name, on=True)  # also back from a cool-down the breaker started
            log.info("plugin %s is switched on", name)


def _names(app: App) -> list[str]:
    return [plugin.name for plugin in app.plugins]


def _kept(app: App) -> set[str]:
    """Switching these off would leave no way back (/enable) or no /help."""
    return {PLUGIN, *(plugin.name for plugin in app.plugins if plugin.source == "built-in")}


def did_you_mean(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or nothing (as botcore's own errors say)."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


async def plugins(turn: Turn) -> str:
    """/plugins: every loaded plugin, on or off and why, with its version and commands."""
    lines = []
    for info in turn.app.plugins:
        status = turn.app.plugin_state(info.name)
        if status.seconds_left is not None:
            left = max(1, math.ceil(status.seconds_left))
            state = turn.t("admin.cooling_down", seconds=left)
        else:
            state = turn.t(f"admin.{status.state}")
        commands = " ".join("/" + c for c in info.commands)
        lines.append(
            f"{info.name} {info.version} — {state}" + (f" — {commands}" if commands else "")
        )
    return "\n".join(lines)


def _name(turn: Turn) -> str:
    name = turn.args.split()[0].lower() if turn.args.split() else ""
    if not name:
        raise UserError(turn.t("admin.usage", command=turn.command, example="image"))
    if name not in _names(turn.app):
        hint = did_you_mean(name, _names(turn.app))
        raise UserError(turn.t("admin.unknown", name=name, hint=hint))
    return name


def _set(name: str, off: bool) -> Callable[[list[str] | None], list[str] | None]:
    """The change to `disabled` (stored, else bot.toml's) that switches `name` off or on;
    nothing to store if it already is."""

    def change(current: list[str] | None) -> list[str] | None:
        if (name in (current or [])) == off:
            return current
        rest = [n for n in current or [] if n != name]
        return [*rest, name] if off else rest

    return change


async def enable(turn: Turn) -> str:
    """/enable <plugin>"""
    name = _name(turn)
    await turn.app.override("plugins.admin.disabled", _set(name, off=False))  # see _follow
    turn.app.switch_plugin(name, on=True)  # even if it was on: back from the breaker's cool-down
    log.info("admin %s switched plugin %s on", turn.user_id, name)
    return turn.t("admin.enabled", name=name)


async def disable(turn: Turn) -> str:
    """/disable <plugin>"""
    name = _name(turn)
    if name in _kept(turn.app):
        raise UserError(turn.t("admin.keep", name=name))
    await turn.app.override("plugins.admin.disabled", _set(name, off=True))  # see _follow
    log.info("admin %s switched plugin %s off", turn.user_id, name)
    return turn.t("admin.disabled", name=name)


AUDIT_SHOWN = 20
AUDIT_MAX = 200


async def audit(turn: Turn) -> str:
    """/audit [count]: the recent tool calls, newest first (the arguments only as a digest)."""
    word = turn.args.split()[0] if turn.args.split() else ""
    # isdecimal, not isdigit: "²" is a digit that int() refuses (the command would fail)
    count = min(int(word), AUDIT_MAX) if word.isdecimal() and int(word) > 0 else AUDIT_SHOWN
    calls = await turn.app.tool_calls(count)
    if not calls:
        return turn.t("admin.audit_empty")
    lines = [turn.t("admin.audit_title")]
    for call in calls:
        key = f"admin.audit.{call.outcome}"
        outcome = turn.t(key)
        lines.append(
            turn.t(
                "admin.audit_line",
                time=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(call.at)),
                tool=call.tool,
                outcome=call.outcome if outcome == key else outcome,
                user=call.user if call.user is not None else "?",
                chat=call.chat,
                digest=call.digest,
            )
        )
    return "\n".join(lines)
