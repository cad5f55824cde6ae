"""chat models: `/model` lets each user pick, with buttons, one of the models bot.toml lists.

`[plugins.chat.models.<name>]` lists them (the name is the model's id at the endpoint); `model`
stays the default. The choice is a record in `app.store` ("chat.model") per user, so it survives
restarts and follows the user into groups. A model the user may not use is neither shown nor
used: a choice that bot.toml no longer lists, or no longer allows, falls back to the default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from botcore import Button, StrictModel, Text, Turn

if TYPE_CHECKING:
    from . import Settings

NAMESPACE = "chat.model"
PREFIX = "model:"
"""Button data of a model choice: PREFIX + the model's name."""


class ModelChoice(StrictModel):
    """[plugins.chat.models.<name>]"""

    label: str = ""
    """What /model shows; the name when empty."""
    vision: bool = False
    """It takes images: photos go to it (else to `vision_model`, or the default model)."""
    tools: bool = True
    """It may call tools (plugin tools are offered to it)."""
    users: list[int] | None = None
    """Who may pick it; everyone when unset. bot.admins may always."""
    admins_only: bool = False
    input_price: float | None = Field(None, ge=0)
    """Price per 1M prompt tokens for the usage ledger; [plugins.usage] prices when unset."""
    output_price: float | None = Field(None, ge=0)
    """Price per 1M answer tokens, reasoning included (endpoints count reasoning tokens in
    completion_tokens); [plugins.usage] prices when unset."""


def _key(turn: Turn) -> str:
    return str(turn.sender_id)


def _may_use(turn: Turn, choice: ModelChoice) -> bool:
    if turn.user_id is not None and turn.user_id in turn.app.admins:
        return True
    if choice.admins_only:
        return False
    return choice.users is None or turn.sender_id in choice.users


def offered(turn: Turn, settings: Settings) -> dict[str, ModelChoice]:
    """The models this user may pick, the default first."""
    found = {settings.model: settings.models.get(settings.model, ModelChoice())}
    for name, choice in settings.models.items():
        if name != settings.model and _may_use(turn, choice):
            found[name] = choice
    return found


async def chosen(turn: Turn, settings: Settings) -> tuple[str, ModelChoice | None]:
    """The model for this turn: the user's /model choice while it is listed and allowed, else
    the default (and its entry in `models`, if it has one)."""
    default = settings.model, settings.models.get(settings.model)
    if not settings.models:
        return default  # nothing to choose from: no store read per message
    name = await turn.app.store.get(NAMESPACE, _key(turn))
    choice = settings.models.get(name) if isinstance(name, str) else None
    if choice is None or not _may_use(turn, choice):
        return default
    return str(name), choice


def price(turn: Turn, choice: ModelChoice | None) -> None:
    """Let the usage ledger price this turn's tokens at the model's own prices, if it has any."""
    if choice is None:
        return
    for item, per_million in (
        ("chat.input_tokens", choice.input_price),
        ("chat.output_tokens", choice.output_price),
    ):
        if per_million is not None:
            turn.prices[item] = per_million / 1_000_000


async def model_command(turn: Turn) -> Text | str:
    """/model: the models this user may pick, as buttons; the current one marked."""
    from . import Settings

    settings = turn.app.settings(Settings)
    if not settings.models:
        return turn.t("chat.model_only", model=settings.model)
    current, _ = await chosen(turn, settings)
    rows = [
        [Button(("✓ " if name == current else "") + (choice.label or name), PREFIX + name)]
        for name, choice in offered(turn, settings).items()
    ]
    return Text(turn.t("chat.model_pick"), buttons=rows)


async def pick(turn: Turn, data: str) -> str:
    """A /model button: keep the choice if the model is still offered to this user."""
    from . import Settings

    settings = turn.app.settings(Settings)
    name = data.removeprefix(PREFIX)
    choice = offered(turn, settings).get(name)
    if choice is None:
        return turn.t("chat.model_gone")
    stored = None if name == settings.model else name  # the default: nothing to keep
    await turn.app.store.put(NAMESPACE, _key(turn), stored)
    return turn.t("chat.model_set", label=choice.label or name)


TEXTS = {
    "en": {
        "chat.model_help": "Choose the model that answers you",
        "chat.model_pick": "Which model should answer you?",
        "chat.model_set": "{label} answers you from now on.",
        "chat.model_gone": "That model is not available (any more). Send /model to choose again.",
        "chat.model_only": "This bot answers with {model}; there is no other model to choose.",
    },
    "ru": {
        "chat.model_help": "Выбрать модель, которая вам отвечает",
        "chat.model_pick": "Какая модель будет вам отвечать?",
        "chat.model_set": "Теперь вам отвечает {label}.",
        "chat.model_gone": "Эта модель недоступна. Отправьте /model, чтобы выбрать снова.",
        "chat.model_only": "Этот бот отвечает моделью {model}; другой модели для выбора нет.",
    },
}
