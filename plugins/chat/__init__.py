"""chat: every text that is not a command goes to the chat model, with the conversation's history.

Reads and writes history through `app.history` (whatever plugin provides it; none means every
message stands alone). The user's message is stored before the model is called, so an API failure
never loses it; the answer is stored once it is complete, and a streamed one, before each time it
is shown, as the history's draft (a kill -9 keeps what the user saw). Photos and image files are
answered the same way with the image attached (vision.py); /mode picks the system prompt
(personas.py) and /model the model, with buttons (models.py).

Tools (`register_tools` of any plugin) are offered to the model; when it calls them, the calls run
(in parallel, each with a timeout), their results go back to the model, and the assistant message
with its calls is stored together with every result, so the history stays valid for the API.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator

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
    explain_api_error,
    hookimpl,
    is_api_error,
)

from . import models, personas, vision
from .models import ModelChoice
from .personas import Persona, check_names

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
    max_tool_rounds: int = Field(5, ge=0, le=50)
    """How many rounds of tool calls one answer may take; 0 offers the model no tools."""
    tool_timeout: float = Field(30, gt=0, le=600)
    """Seconds a tool may run; past that the model is told it timed out."""
    personas: dict[str, Persona | str] = Field(default_factory=dict)
    """/mode choices: name -> prompt, or a table with `prompt` and `description`."""
    custom_personas: bool = False
    """Let everyone set their own system prompt with /mode custom (bot.admins always may)."""
    custom_prompt_chars: int = Field(1000, ge=1)
    vision: bool = True
    """Photos and image files go to `vision_model` with their caption."""
    vision_model: str | None = None
    """A vision-capable model; `model` when unset."""
    vision_max_mb: float = Field(10, gt=0, le=20)
    vision_side: int = Field(1024, ge=256, le=2048)
    """The longest side (px) of the image sent to the model."""
    vision_history_side: int = Field(512, ge=64, le=2048)
    """The longest side of the low-detail copy kept in the history for follow-up questions."""
    vision_history_images: int = Field(3, ge=0)
    """At most this many earlier images go with a request; older ones become "[image]"."""

    models: dict[str, ModelChoice] = Field(default_factory=dict)
    """/model choices: model id -> label, abilities, who may use it; `model` is the default."""

    _check_personas = field_validator("personas")(check_names)


@hookimpl
def settings_model() -> type[Settings]:
    return Settings


@hookimpl
async def startup(app: App) -> None:
    app.require_openai()  # a missing [openai] key fails start-up, not the first message
    await app.completions.open()  # before the first update: no answer waits for it


@hookimpl
def register_texts() -> dict[str, dict[str, str]]:
    return {
        "en": {
            "chat.too_long": "Your message is too long for the model: about {tokens} tokens, "
            "the limit is {limit}. Please shorten it.",
            "chat.empty_answer": "The model returned an empty answer. Please try again.",
            "chat.interrupted": "The answer was cut off. Please try again.",
            "chat.empty_question": "Your message is empty: write me a question.",
            "chat.tool_rounds": "The model kept calling tools without answering, so I stopped "
            "after {rounds} rounds. Please try again or rephrase the question.",
            "chat.retry": "Answer my last message again",
            "chat.nothing_to_retry": "There is nothing to retry yet: send me a message first.",
            **vision.TEXTS["en"],
            **personas.TEXTS["en"],
            **models.TEXTS["en"],
        },
        "ru": {
            "chat.too_long": "Сообщение слишком длинное для модели: около {tokens} токенов "
            "при пределе {limit}. Сократите его, пожалуйста.",
            "chat.empty_answer": "Модель вернула пустой ответ. Попробуйте ещё раз.",
            "chat.interrupted": "Ответ оборвался. Попробуйте ещё раз.",
            "chat.empty_question": "Сообщение пустое: напишите мне вопрос.",
            "chat.tool_rounds": "Модель раз за разом вызывала инструменты и не отвечала, поэтому "
            "я остановился после {rounds} раундов. Попробуйте ещё раз или переформулируйте вопрос.",
            "chat.retry": "Ответить на моё последнее сообщение заново",
            "chat.nothing_to_retry": "Пока нечего повторять: сначала напишите мне что-нибудь.",
            **vision.TEXTS["ru"],
            **personas.TEXTS["ru"],
            **models.TEXTS["ru"],
        },
    }


@hookimpl
def register_commands(app: App) -> Sequence[Command]:
    return [
        Command("retry", retry, help=app.translations("chat.retry")),
        Command("mode", personas.mode, help=app.translations("chat.mode_help")),
        Command("model", models.model_command, help=app.translations("chat.model_help")),
    ]


@hookimpl
async def button_pressed(turn: Turn, data: str) -> str | None:
    if data.startswith(models.PREFIX):
        return await models.pick(turn, data)
    return None


@hookimpl
def register_handlers() -> Sequence[Handler]:
    return [
        Handler({"text"}, answer, name="chat"),
        Handler(vision.KINDS, answer_image, name="chat.vision"),
    ]


def estimate_tokens(message: ChatMessage) -> int:
    """A cheap, offline token estimate (no tokenizer download): ~3 chars a token, UTF-8 aware."""
    content = message.get("content") or ""
    if isinstance(content, list):  # text and image parts
        return sum(vision.part_tokens(part) for part in content) + 4
    text = content if isinstance(content, str) else str(content)
    for call in message.get("tool_calls") or ():
        text += str(call.get("function", {}).get("name", "")) + str(
            call.get("function", {}).get("arguments", "")
        )
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


def lent_context(turn: Turn, budget: int) -> list[ChatMessage]:
    """`turn.extra["chat.context"]`: texts other plugins lend this one request (a document's
    parts), most wanted first. Those that fit in `budget` go as one system message just before
    the user's; the history gets what is left, and none of it is stored."""
    texts = turn.extra.get("chat.context") or ()
    kept: list[str] = []
    for text in texts if isinstance(texts, list | tuple) else ():
        joined = "\n\n".join([*kept, str(text)])
        if estimate_tokens({"role": "system", "content": joined}) <= budget:
            kept.append(str(text))  # one that does not fit leaves room for a smaller one after it
    return [{"role": "system", "content": "\n\n".join(kept)}] if kept else []


async def answer_image(turn: Turn) -> Text | TextStream | None:
    """Answer a photo or an image file, with its caption, with the vision model."""
    settings = turn.app.settings(Settings)
    if not _wanted(turn, settings):
        return None
    if not settings.vision:
        return Text(turn.t("chat.vision_off")) if vision.carries_image(turn) else None
    picture = await vision.picture(turn, settings)
    return None if picture is None else await answer(turn, picture)


def _wanted(turn: Turn, settings: Settings) -> bool:
    """The `groups` rule: in groups answer only what it lets through."""
    return turn.is_private or not (
        settings.groups == "off" or (settings.groups == "addressed" and not turn.addressed)
    )


async def answer(turn: Turn, picture: vision.Picture | None = None) -> Text | TextStream | None:
    """Answer a text (or an image with its caption) with the model."""
    settings = turn.app.settings(Settings)
    if not _wanted(turn, settings):
        return None
    text = (turn.text or "").strip()
    if turn.app.bot_username:
        text = re.sub(rf"@{re.escape(turn.app.bot_username)}\b", "", text, flags=re.I).strip()
    if not text and picture is None:  # whitespace only, or just the bot's @name
        raise UserError(turn.t("chat.empty_question"))
    if not turn.is_private and turn.message.from_user and (text or picture is None):
        text = f"{turn.message.from_user.first_name}: {text}"
    user: ChatMessage = {"role": "user", "content": text}
    kept = user
    if picture is not None:
        user = {"role": "user", "content": vision.content(text, picture.now)}
        kept = {"role": "user", "content": vision.content(text, picture.kept)}
    return await respond(turn, user, kept)


async def retry(turn: Turn) -> Text | TextStream:
    """/retry: forget the last answer and ask the model again."""
    store = turn.app.history
    last = await store.rewind(turn) if store else None
    if last is None:
        raise UserError(turn.t("chat.nothing_to_retry"))
    return await respond(turn, last)


async def respond(
    turn: Turn, user: ChatMessage, kept: ChatMessage | None = None
) -> Text | TextStream:
    """Store the user's message (`kept`: its copy for the history, a smaller image), then answer
    it with the conversation as context."""
    settings = turn.app.settings(Settings)
    model, choice = await models.chosen(turn, settings)
    no_tools = choice is not None and not choice.tools
    if model != settings.model or no_tools:
        rounds = 0 if no_tools else settings.max_tool_rounds
        settings = settings.model_copy(update={"model": model, "max_tool_rounds": rounds})
    prompt = await personas.system_prompt(turn, settings)
    system: ChatMessage = {"role": "system", "content": prompt}
    budget = settings.context_tokens - estimate_tokens(system) - (settings.max_answer_tokens or 0)
    if settings.max_tool_rounds:
        budget -= turn.app.tools.size // 3  # the tool definitions ride along with every request
    if estimate_tokens(user) > budget:
        raise UserError(turn.t("chat.too_long", tokens=estimate_tokens(user), limit=max(budget, 0)))
    store = turn.app.history
    past = await store.load(turn, limit=settings.context_messages) if store else []
    if store:
        await store.append(turn, user if kept is None else kept)
    budget -= estimate_tokens(user)
    lent = lent_context(turn, budget)
    budget -= sum(map(estimate_tokens, lent))
    past = vision.recent_images(past, settings.vision_history_images if settings.vision else 0)
    messages = [system, *fit_history(past, budget, settings.context_messages), *lent, user]
    takes_images = choice is not None and choice.vision
    if settings.vision_model and not takes_images and vision.has_images(messages):
        settings = settings.model_copy(update={"model": settings.vision_model})
    await turn.reserve(
        {
            "chat.input_tokens": sum(map(estimate_tokens, messages)),
            "chat.output_tokens": settings.max_answer_tokens or 1000,  # uncapped: a long answer
        }
    )
    if settings.stream:
        shown = _Shown(turn)
        return TextStream(_stream(turn, settings, messages, shown), on_show=shown.keep)
    return Text(await _complete(turn, settings, messages), markdown=True)


def _request(turn: Turn, settings: Settings, messages: list[ChatMessage]) -> dict[str, Any]:
    request: dict[str, Any] = {"model": settings.model, "messages": messages}
    tools = turn.app.tools.definitions(turn) if settings.max_tool_rounds else []  # those allowed
    if tools:  # every tool's plugin may be switched off, and the API refuses an empty list
        request["tools"] = tools
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
    rounds = 0
    said: list[str] = []  # what the model said along with its tool calls, shown as when streamed
    async with turn.chat_action("typing"):
        while True:
            try:
                with turn.app.metrics.timed("llm_seconds", plugin=PLUGIN, model=settings.model):
                    response = await _create(turn, _request(turn, settings, messages), stream=False)
            except Exception as exc:
                if not is_api_error(exc):
                    raise
                raise explain_api_error(exc, turn, plugin=PLUGIN) from None
            _meter(turn, response.usage)
            message = response.choices[0].message if response.choices else None
            calls = ToolCalls.from_message(message)
            if not calls:
                break
            content = message.content if message else None
            await _use_tools(turn, settings, messages, content, calls, rounds)
            if content and content.strip():
                said.append(content.strip())
            rounds += 1
    text = (message.content or "").strip() if message else ""
    if not text:
        raise UserError(turn.t("chat.empty_answer"))
    await _remember(turn, text)
    return "\n\n".join([*said, text])


class _Shown:
    """What the user has seen of one streamed answer, kept as the history's draft before it is
    shown (TextStream.on_show), so that a kill -9 mid-answer loses none of it."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.offset = 0
        """Where this round's text begins in the stream (earlier rounds went with tool calls)."""
        self.kept = ""
        self.done = False
        """The answer is stored whole: nothing is left to keep."""

    async def keep(self, text: str) -> None:
        """Delivery is about to show `text` (the whole stream so far)."""
        draft = getattr(self.turn.app.history, "draft", None)  # a HistoryStore may have none
        content = text[self.offset :].strip()
        if draft is None or self.done or not content or content == self.kept:
            return
        self.kept = content
        await draft(self.turn, content)

    def stored(self, offset: int) -> None:
        """The text so far is in the history (with tool calls); the next round begins at offset."""
        self.offset, self.kept = offset, ""

    async def drop(self) -> None:
        """/cancel: the user stopped the answer, so its half is not kept."""
        draft = getattr(self.turn.app.history, "draft", None)
        if draft is not None and self.kept:
            self.kept = ""
            await draft(self.turn, None)


async def _stream(
    turn: Turn, settings: Settings, messages: list[ChatMessage], shown: _Shown | None = None
) -> AsyncIterator[str]:
    """Yield the answer as it arrives; store it once complete (what is shown meanwhile is kept
    as a draft by `shown`)."""
    shown = shown or _Shown(turn)
    parts: list[str] = []  # everything shown, over all rounds
    rounds = 0
    started = time.perf_counter()
    stream: Any = None
    try:
        while True:
            said: list[str] = []  # this round's text
            await _close(stream)
            async with turn.chat_action("typing"):
                stream, first, chunks, calls = await _open_stream(
                    turn, _request(turn, settings, messages)
                )
            if first:
                separator = "\n\n" if parts else ""  # from an earlier round's text, if any
                if separator:
                    parts.append(separator)
                shown.stored(sum(map(len, parts)))
                if separator:
                    yield separator
                said.append(first)
                parts.append(first)
                yield first
                while (piece := await _next_text(turn, chunks, calls)) is not None:
                    said.append(piece)
                    parts.append(piece)
                    yield piece
            if not calls:
                break
            async with turn.chat_action("typing"):
                await _use_tools(turn, settings, messages, "".join(said), calls, rounds)
            rounds += 1
    except UserError:
        raise
    except (GeneratorExit, asyncio.CancelledError):
        await shown.drop()
        raise
    except Exception as exc:
        if parts:  # the stream broke after the answer began: say so, keep what was shown
            log.warning("the answer stream broke (update %s): %r", turn.update_id, exc)
            raise UserError(turn.t("chat.interrupted")) from exc
        if is_api_error(exc):
            raise explain_api_error(exc, turn, plugin=PLUGIN) from None
        raise
    finally:  # the model's time: from the request to the last chunk (or the failure)
        turn.app.metrics.observe(
            "llm_seconds", time.perf_counter() - started, plugin=PLUGIN, model=settings.model
        )
        await _close(stream)  # a cancelled or broken answer lets go of its connection
    if not "".join(parts).strip():
        raise UserError(turn.t("chat.empty_answer"))
    if text := "".join(said).strip():
        await _remember(turn, text)
    shown.done = True


async def _open_stream(
    turn: Turn, request: dict[str, Any]
) -> tuple[Any, str | None, AsyncIterator[Any], ToolCalls]:
    """Start a stream and read up to its first text. A stream that breaks before any text was
    shown is asked again (up to openai.max_retries times): the user has seen nothing yet."""
    retries = turn.app.completions.max_retries
    attempt = 0
    while True:
        stream = await _create(turn, request, stream=True)  # the client retries this part
        chunks = stream.__aiter__()
        calls = ToolCalls()  # afresh each attempt: a broken stream's pieces are dropped
        try:
            return stream, await _next_text(turn, chunks, calls), chunks, calls
        except BaseException as exc:
            await _close(stream)
            if attempt >= retries or not isinstance(exc, Exception):
                raise
            attempt += 1
            log.warning(
                "the answer stream broke before its first words (update %s), asking again: %r",
                turn.update_id,
                exc,
            )


async def _close(stream: Any) -> None:
    """Let go of a stream's response (either client's stream; None and a closed one are fine)."""
    if stream is not None:
        try:
            await stream.close()
        except Exception as exc:  # the answer is over either way
            log.debug("closing the answer stream failed: %r", exc)


def _meter(turn: Turn, usage: Any) -> None:
    """Record the tokens the endpoint reports (absent on endpoints that do not report usage)."""
    if usage is not None:
        turn.meter("chat.input_tokens", usage.prompt_tokens or 0)
        turn.meter("chat.output_tokens", usage.completion_tokens or 0)


async def _next_text(
    turn: Turn, chunks: AsyncIterator[Any], calls: ToolCalls | None = None
) -> str | None:
    """The next non-empty piece of content; None at the end of the stream. Tool call pieces on
    the way are gathered into `calls`."""
    async for chunk in chunks:
        if chunk.usage is not None:  # the last chunk, with stream_options.include_usage
            _meter(turn, chunk.usage)
        if chunk.choices:
            delta = chunk.choices[0].delta
            if delta.tool_calls and calls is not None:
                calls.add_deltas(delta.tool_calls)
            if delta.content:
                return str(delta.content)
    return None


@dataclass
class ToolCall:
    """One function call the model asked for."""

    id: str
    name: str
    arguments: str = ""


@dataclass
class ToolCalls:
    """The tool calls of one response, whole (plain) or put together from stream deltas."""

    calls: dict[int, ToolCall] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.calls)

    def __iter__(self) -> Iterator[ToolCall]:
        return iter(self.calls[index] for index in sorted(self.calls))

    @classmethod
    def from_message(cls, message: Any) -> ToolCalls:
        """The calls of a complete (non-streamed) assistant message."""
        found = cls()
        for index, call in enumerate(getattr(message, "tool_calls", None) or ()):
            function = call.function
            found.calls[index] = ToolCall(
                call.id or f"call_{index}", function.name, function.arguments or ""
            )
        return found

    def add_deltas(self, deltas: Sequence[Any]) -> None:
        """Merge streamed pieces: the first of a call brings its id and name, the rest bring
        fragments of the arguments (several calls interleave by `index`)."""
        for delta in deltas:
            index = delta.index if delta.index is not None else len(self.calls)
            call = self.calls.get(index)
            if call is None:
                call = self.calls[index] = ToolCall(delta.id or f"call_{index}", "")
            elif delta.id:
                call.id = delta.id
            function = delta.function
            if function is not None:
                call.name += function.name or ""
                call.arguments += function.arguments or ""


async def _use_tools(
    turn: Turn,
    settings: Settings,
    messages: list[ChatMessage],
    content: str | None,
    calls: ToolCalls,
    rounds: int,
) -> None:
    """Run one round of tool calls (in parallel), deliver what they made for the user, and add
    the assistant's calls with every result to the request and to the history, together."""
    log.info(
        "update %s: the model calls %s", turn.update_id, ", ".join(call.name for call in calls)
    )
    if rounds >= settings.max_tool_rounds:
        log.warning(
            "the model still called tools after %s rounds (update %s): %s",
            rounds,
            turn.update_id,
            ", ".join(call.name for call in calls),
        )
        raise UserError(turn.t("chat.tool_rounds", rounds=rounds))
    asked = list(calls)
    results = await asyncio.gather(
        *(
            turn.app.tools.call(turn, call.name, call.arguments, timeout=settings.tool_timeout)
            for call in asked
        )
    )
    for result in results:
        if result.reply is not None:
            await turn.send(result.reply)
    exchange: list[ChatMessage] = [
        {
            "role": "assistant",
            "content": content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in asked
            ],
        },
        *(
            {"role": "tool", "tool_call_id": call.id, "content": result.content}
            for call, result in zip(asked, results, strict=True)
        ),
    ]
    messages.extend(exchange)
    if turn.app.history:
        await turn.app.history.append(turn, *exchange)
