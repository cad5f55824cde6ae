"""chat personas: `/mode` lists the system prompts bot.toml defines and picks one per conversation.

The choice is a record in `app.store` ("chat.persona"), so it survives restarts and is not part of
the conversation: /clear keeps it. The key is the chat in private chats and the member within a
group, so one member's choice never changes the bot for the others. A persona that bot.toml no
longer defines falls back to the default (`system_prompt`).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from pydantic import Field

from botcore import StrictModel, Turn, UserError

if TYPE_CHECKING:
    from . import Settings

log = logging.getLogger(__name__)

NAMESPACE = "chat.persona"
DEFAULT = "default"
CUSTOM = "custom"
NAME = re.compile(r"^[a-z0-9_-]{1,32}$")
"""Persona names are typed after /mode: short, lower-case, no spaces."""


class Persona(StrictModel):
    """[plugins.chat.personas.<name>]"""

    prompt: str = Field(min_length=1)
    description: str = ""
    """Shown by /mode; the start of the prompt when empty."""


def check_names(personas: dict[str, Any]) -> dict[str, Any]:
    """Settings validator: names /mode can take, and not the reserved ones."""
    for name in personas:
        if not NAME.match(name):
            raise ValueError(f"persona name {name!r} must be 1-32 of a-z, 0-9, _ and -")
        if name in (DEFAULT, CUSTOM):
            raise ValueError(f"persona name {name!r} is reserved")
    return personas


def _defined(settings: Settings) -> dict[str, Persona]:
    return {
        name: value if isinstance(value, Persona) else Persona(prompt=value)
        for name, value in settings.personas.items()
    }


def _key(turn: Turn) -> str:
    return str(turn.chat_id) if turn.is_private else f"{turn.chat_id}:{turn.user_id}"


def _may_customize(turn: Turn, settings: Settings) -> bool:
    return settings.custom_personas or turn.user_id in turn.app.admins


async def system_prompt(turn: Turn, settings: Settings) -> str:
    """The system prompt for this turn: the conversation's persona, or `system_prompt`."""
    if not settings.personas and not _may_customize(turn, settings):
        return settings.system_prompt  # nothing to choose from: no store read per message
    chosen = await turn.app.store.get(NAMESPACE, _key(turn))
    if not isinstance(chosen, dict):
        return settings.system_prompt
    name = chosen.get("name")
    if name == CUSTOM and isinstance(chosen.get("prompt"), str):
        if _may_customize(turn, settings):
            return str(chosen["prompt"])
        return settings.system_prompt  # custom prompts were turned off since
    persona = _defined(settings).get(str(name))
    return persona.prompt if persona else settings.system_prompt


def _describe(persona: Persona) -> str:
    text = persona.description or persona.prompt
    return text if len(text) <= 80 else text[:79] + "…"


async def mode(turn: Turn) -> str:
    """/mode lists the personas; /mode <name> picks one; /mode custom <prompt> sets your own."""
    from . import Settings

    settings = turn.app.settings(Settings)
    personas = _defined(settings)
    name, *more = turn.args.split(None, 1) if turn.args.strip() else ("",)
    name, rest = name.lower(), more[0] if more else ""
    store = turn.app.store
    if not name:
        return await _listing(turn, settings, personas)
    if name == CUSTOM:
        if not _may_customize(turn, settings):
            raise UserError(turn.t("chat.mode_custom_off"))
        prompt = rest.strip()
        if not prompt:
            raise UserError(turn.t("chat.mode_custom_usage"))
        if len(prompt) > settings.custom_prompt_chars:
            raise UserError(turn.t("chat.mode_custom_long", limit=settings.custom_prompt_chars))
        await store.put(NAMESPACE, _key(turn), {"name": CUSTOM, "prompt": prompt})
        return turn.t("chat.mode_custom_set")
    if name == DEFAULT:
        await store.put(NAMESPACE, _key(turn), None)
        return turn.t("chat.mode_set", name=DEFAULT)
    if name not in personas:
        names = ", ".join([DEFAULT, *personas])
        raise UserError(turn.t("chat.mode_unknown", name=name[:32], names=names))
    await store.put(NAMESPACE, _key(turn), {"name": name})
    return turn.t("chat.mode_set", name=name)


async def _listing(turn: Turn, settings: Settings, personas: dict[str, Persona]) -> str:
    chosen = await turn.app.store.get(NAMESPACE, _key(turn))
    current = str(chosen.get("name")) if isinstance(chosen, dict) else DEFAULT
    if current != CUSTOM and current not in personas:
        current = DEFAULT
    lines = [turn.t("chat.mode_list", current=current)]
    lines.append(f"• {DEFAULT} — {turn.t('chat.mode_default')}")
    lines += [f"• {name} — {_describe(persona)}" for name, persona in personas.items()]
    lines.append(turn.t("chat.mode_pick"))
    if _may_customize(turn, settings):
        lines.append(turn.t("chat.mode_custom_hint"))
    return "\n".join(lines)


TEXTS = {
    "en": {
        "chat.mode_help": "Choose how the assistant behaves: /mode, /mode <name>",
        "chat.mode_list": "Modes (now: {current}):",
        "chat.mode_default": "the standard assistant",
        "chat.mode_pick": "Pick one with /mode <name>.",
        "chat.mode_custom_hint": "Or give your own instructions: /mode custom <text>",
        "chat.mode_set": "Mode: {name}. It applies from your next message.",
        "chat.mode_unknown": "There is no mode “{name}”. Available: {names}.",
        "chat.mode_custom_off": "Custom instructions are turned off on this bot; "
        "pick one of the modes from /mode.",
        "chat.mode_custom_usage": "Write your instructions after the command, for example:\n"
        "/mode custom Answer like a pirate.",
        "chat.mode_custom_long": "Your instructions are too long: at most {limit} characters.",
        "chat.mode_custom_set": "Done: I will follow your instructions from your next message. "
        "/mode default goes back.",
    },
    "ru": {
        "chat.mode_help": "Выбрать, как ведёт себя ассистент: /mode, /mode <имя>",
        "chat.mode_list": "Режимы (сейчас: {current}):",
        "chat.mode_default": "обычный ассистент",
        "chat.mode_pick": "Выберите: /mode <имя>.",
        "chat.mode_custom_hint": "Или задайте свои инструкции: /mode custom <текст>",
        "chat.mode_set": "Режим: {name}. Действует со следующего сообщения.",
        "chat.mode_unknown": "Режима «{name}» нет. Доступны: {names}.",
        "chat.mode_custom_off": "Свои инструкции в этом боте отключены; выберите режим из /mode.",
        "chat.mode_custom_usage": "Напишите инструкции после команды, например:\n"
        "/mode custom Отвечай как пират.",
        "chat.mode_custom_long": "Инструкции слишком длинные: не больше {limit} символов.",
        "chat.mode_custom_set": "Готово: со следующего сообщения следую вашим инструкциям. "
        "/mode default вернёт обычный режим.",
    },
}
"""Merged into the chat plugin's register_texts."""
