"""chat: every text that is not a command goes to the chat model, with the conversation's history.

Reads and writes history through `app.history` (whatever plugin provides it; none means every
message stands alone). The user's message is stored before the model is called, so an API failure
never loses it; the answer is stored once it is complete.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from pydantic import Field

from botcore import (
    App,
    ChatMessage,
    Handler,
    StrictModel,
    Text,
    TextStream,
    Turn,
    UserError,
    hookimpl,
)
from botcore.ai import explain

PLUGIN = "chat"
log = logging.getLogger(__name__)


class Settings(StrictModel):
    """[plugins.chat]"""

    model: str = "gpt-4o-mini"
    system_prompt: str = (
        "You are a helpful assistant in a Telegram chat. Answer concisely, in the user's language."
    )
    stream: bool = True
    """Show the answer as it is written; turn off for endpoints that cannot stream."""
    temperature: float | None = Field(None, ge=0, le=2)
    max_answer_tokens: int | None = Field(None, ge=1)
    context_tokens: int = Field(12_000, ge=256)
    """Budget for system prompt + history + the new message (estimated); oldest turns go first."""
    context_messages: int = Field(40, ge=0)
    """At most this many past messages are sent."""
    groups: Literal["addressed", "all", "off"] = "addressed"
    """In groups answer when mentioned, replied to (addressed), every message (all), or never (off)."""


@hookimpl
def settings_model() -> type[Settings]:
    return Settings


@hookimpl
def startup(app: App) -> None:
    app.require_openai()  # a missing [openai] key fails start-up, not the first message


@hookimpl
def register_texts() -> dict[str, dict[str, str]]:
    return {
        "en": {
            "chat.too_long": "Your message is too long for the model: about {tokens} tokens, "
            "the limit is {limit}. Please shorten it.",
            "chat.empty_answer": "The model returned an empty answer. Please try again.",
            "chat.interrupted": "The answer was cut off. Please try again.",
        },
        "ru": {
            "chat.too_long": "Сообщение слишком длинное для модели: около {tokens} токенов "
            "при пределе {limit}. Сократите его, пожалуйста.",
            "chat.empty_answer": "Модель вернула пустой ответ. Попробуйте ещё раз.",
            "chat.interrupted": "Ответ оборвался. Попробуйте ещё раз.",
        },
    }


@hookimpl
def register_handlers() -> Sequence[Handler]:
    return [Handler({"text"}, answer, name="chat")]


def estimate_tokens(message: ChatMessage) -> int:
    """A cheap, offline token estimate (no tokenizer download): ~3 chars a token, UTF-8 aware."""
    content = message.get("content") or ""
    text = content if isinstance(content, str) else str(content)
    return max(len(text) // 3, len(text.encode()) // 4) + 4


def fit_history(past: list[ChatMessage], budget: int, max_messages: int) -> list[ChatMessage]:
    """The newest past messages that fit in `budget` tokens, oldest first."""
    kept: list[ChatMessage] = []
    for message in reversed(past[-max_messages:] if max_messages else []):
        cost = estimate_tokens(message)
        if cost > budget:
            break
        budget -= cost
        kept.append(message)
    kept.reverse()
    while kept and kept[0].get("role") not in ("user", "system"):
        kept.pop(0)  # never open the context in the middle of an exchange
    return kept


async def answer(turn: Turn) -> Text | TextStream | None:
    """Answer a text with the model."""
    settings = turn.app.settings(Settings)
    if not turn.is_private and (
        settings.groups == "off" or (settings.groups == "addressed" and not turn.addressed)
    ):
        return None
    text = (turn.text or "").strip()
    if turn.app.bot_username:
        text = re.sub(rf"@{re.escape(turn.app.bot_username)}\b", "", text, flags=re.I).strip()
    if not text:
        return None
    if not turn.is_private and turn.message.from_user:
        text = f"{turn.message.from_user.first_name}: {text}"
    system: ChatMessage = {"role": "system", "content": settings.system_prompt}
    user: ChatMessage = {"role": "user", "content": text}
    budget = settings.context_tokens - estimate_tokens(system) - (settings.max_answer_tokens or 0)
    if estimate_tokens(user) > budget:
        raise UserError(turn.t("chat.too_long", tokens=estimate_tokens(user), limit=max(budget, 0)))
    store = turn.app.history
    past = await store.load(turn) if store else []
    if store:
        await store.append(turn, user)
    budget -= estimate_tokens(user)
    messages = [system, *fit_history(past, budget, settings.context_messages), user]
    if settings.stream:
        return TextStream(_stream(turn, settings, messages), markdown=True)
    return Text(await _complete(turn, settings, messages), markdown=True)


def _request(settings: Settings, messages: list[ChatMessage]) -> dict[str, Any]:
    request: dict[str, Any] = {"model": settings.model, "messages": messages}
    if settings.temperature is not None:
        request["temperature"] = settings.temperature
    if settings.max_answer_tokens is not None:
        request["max_completion_tokens"] = settings.max_answer_tokens
    return request


async def _create(turn: Turn, request: dict[str, Any], *, stream: bool) -> Any:
    """POST /chat/completions: the SDK's retries and errors, lighter chunks (botcore.completions)."""
    return await turn.app.completions.create(request, stream=stream)


async def _remember(turn: Turn, text: str) -> None:
    if turn.app.history:
        await turn.app.history.append(turn, {"role": "assistant", "content": text})


async def _complete(turn: Turn, settings: Settings, messages: list[ChatMessage]) -> str:
    import openai

    try:
        async with turn.chat_action("typing"):
            response = await _create(turn, _request(settings, messages), stream=False)
    except openai.OpenAIError as exc:
        raise explain(exc, turn, plugin=PLUGIN) from None
    text = (response.choices[0].message.content or "").strip() if response.choices else ""
    if not text:
        raise UserError(turn.t("chat.empty_answer"))
    await _remember(turn, text)
    return text


async def _stream(
    turn: Turn, settings: Settings, messages: list[ChatMessage]
) -> AsyncIterator[str]:
    """Yield the answer as it arrives; store it once complete."""
    import openai

    parts: list[str] = []
    try:
        async with turn.chat_action("typing"):
            stream = await _create(turn, _request(settings, messages), stream=True)
            chunks = stream.__aiter__()
            first = await _next_text(chunks)
        if first:
            parts.append(first)
            yield first
            while (piece := await _next_text(chunks)) is not None:
                parts.append(piece)
                yield piece
    except Exception as exc:
        if parts:  # the stream broke after the answer began: say so, keep what was shown
            log.warning("the answer stream broke (update %s): %r", turn.update_id, exc)
            raise UserError(turn.t("chat.interrupted")) from exc
        if isinstance(exc, openai.OpenAIError):
            raise explain(exc, turn, plugin=PLUGIN) from None
        raise
    text = "".join(parts).strip()
    if not text:
        raise UserError(turn.t("chat.empty_answer"))
    await _remember(turn, text)


async def _next_text(chunks: AsyncIterator[Any]) -> str | None:
    """The next non-empty piece of content; None at the end of the stream."""
    async for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            return str(chunk.choices[0].delta.content)
    return None
