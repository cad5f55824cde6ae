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
    Command,
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
            "chat.retry": "Answer my last message again",
            "chat.nothing_to_retry": "There is nothing to retry yet: send me a message first.",
        },
        "ru": {
            "chat.too_long": "Сообщение слишком длинное для модели: около {tokens} токенов "
            "при пределе {limit}. Сократите его, пожалуйста.",
            "chat.empty_answer": "Модель вернула пустой ответ. Попробуйте ещё раз.",
            "chat.interrupted": "Ответ оборвался. Попробуйте ещё раз.",
            "chat.retry": "Ответить на моё последнее сообщение заново",
            "chat.nothing_to_retry": "Пока нечего повторять: сначала напишите мне что-нибудь.",
        },
    }


@hookimpl
def register_commands(app: App) -> Sequence[Command]:
    return [Command("retry", retry, help=app.texts.translations("chat.retry"))]


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
    return await respond(turn, {"role": "user", "content": text})


async def retry(turn: Turn) -> Text | TextStream:
    """/retry: forget the last answer and ask the model again."""
    store = turn.app.history
    last = await store.rewind(turn) if store else None
    if last is None:
        raise UserError(turn.t("chat.nothing_to_retry"))
    return await respond(turn, last)


async def respond(turn: Turn, user: ChatMessage) -> Text | TextStream:
    """Store the user's message, then answer it with the conversation as context."""
    settings = turn.app.settings(Settings)
    system: ChatMessage = {"role": "system", "content": settings.system_prompt}
    budget = settings.context_tokens - estimate_tokens(system) - (settings.max_answer_tokens or 0)
    if estimate_tokens(user) > budget:
        raise UserError(turn.t("chat.too_long", tokens=estimate_tokens(user), limit=max(budget, 0)))
    store = turn.app.history
    past = await store.load(turn) if store else []
    if store:
        await store.append(turn, user)
    budget -= estimate_tokens(user)
    messages = [system, *fit_history(past, budget, settings.context_messages), user]
    await turn.reserve(
        {
            "chat.input_tokens": sum(map(estimate_tokens, messages)),
            "chat.output_tokens": settings.max_answer_tokens or 1000,  # uncapped: a long answer
        }
    )
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
    """POST /chat/completions through the client's own post(): the same retries, errors and
    stream parsing as `chat.completions.create`, without its per-request type transform of the
    whole history, which cost ~14 ms of CPU per request with 40 past messages (bench/)."""
    from openai import AsyncStream
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    body = (
        {**request, "stream": True, "stream_options": {"include_usage": True}}
        if stream
        else request
    )
    return await turn.app.openai.post(
        "/chat/completions",
        body=body,
        cast_to=ChatCompletion,
        stream=stream,
        stream_cls=AsyncStream[ChatCompletionChunk],
    )


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
    _meter(turn, response.usage)
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
            first = await _next_text(turn, chunks)
        if first:
            parts.append(first)
            yield first
            while (piece := await _next_text(turn, chunks)) is not None:
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


def _meter(turn: Turn, usage: Any) -> None:
    """Record the tokens the endpoint reports (absent on endpoints that do not report usage)."""
    if usage is not None:
        turn.meter("chat.input_tokens", usage.prompt_tokens or 0)
        turn.meter("chat.output_tokens", usage.completion_tokens or 0)


async def _next_text(turn: Turn, chunks: AsyncIterator[Any]) -> str | None:
    """The next non-empty piece of content; None at the end of the stream."""
    async for chunk in chunks:
        if chunk.usage is not None:  # the last chunk, with stream_options.include_usage
            _meter(turn, chunk.usage)
        if chunk.choices and chunk.choices[0].delta.content:
            return str(chunk.choices[0].delta.content)
    return None
