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
    Reasoning,
    StrictModel,
    Text,
    TextStream,
    Turn,
    UserError,
    explain_api_error,
    hookimpl,
    is_api_error,
)

from . import models, personas, reasoning, vision
from .models import ModelChoice
from .personas import Persona, check_names

PLUGIN = "chat"
log = logging.getLogger(__name__)
SUMMARY_PROMPT = (
    "Summarise the earlier part of a conversation between a user and an assistant, so that the "
    "assistant can go on from it: keep names, numbers, facts, decisions and open questions. "
    "Write in the conversation's language, without a preamble."
)
"""The system prompt of a summary request (tests tell it from an answer's by this text)."""
SUMMARY_HEAD = "A summary of the earlier part of this conversation:\n"
"""What the model reads before a conversation's summary."""
SUMMARY_INPUT_CHARS = 2000
"""Each message's text is cut to this much for the summary request."""


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
    summarize: bool = True
    """When the history outgrows `context_tokens` or `context_messages`, the model summarises its
    older part (metered like any call), kept in the history in place of it; off (or if that
    fails): the oldest messages are left out."""
    summary_model: str | None = None
    """The model that writes summaries; `model` when unset."""
    summary_tokens: int = Field(500, ge=50, le=8000)
    """The longest summary, in tokens."""
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
    reasoning: Literal["show", "hide"] = "show"
    """A reasoning model's thinking: shown collapsed above the answer, or hidden; each user may
    choose otherwise with /reasoning."""

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
            **reasoning.TEXTS["en"],
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
            **reasoning.TEXTS["ru"],
        },
    }


@hookimpl
def register_commands(app: App) -> Sequence[Command]:
    return [
        Command("retry", retry, help=app.translations("chat.retry")),
        Command("mode", personas.mode, help=app.translations("chat.mode_help")),
        Command("model", models.model_command, help=app.translations("chat.model_help")),
        Command(
            "reasoning", reasoning.reasoning_command, help=app.translations("chat.reasoning_help")
        ),
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
    # One more than is sent: a conversation longer than `context_messages` has outgrown them.
    past = await store.load(turn, limit=settings.context_messages + 1) if store else []
    summary = await store.summary(turn) if store else None
    if store:
        await store.append(turn, user if kept is None else kept)
    budget -= estimate_tokens(user)
    lent = lent_context(turn, budget)
    budget -= sum(map(estimate_tokens, lent))
    past = vision.recent_images(past, settings.vision_history_images if settings.vision else 0)
    recalled = _recalled(summary)
    sent = fit_history(past, budget - _tokens(recalled), settings.context_messages)
    outgrown = len(past) > settings.context_messages or _tokens(past) > budget - _tokens(recalled)
    if store and settings.summarize and settings.context_messages and outgrown:
        recalled, sent = await _compact(turn, settings, summary, past, budget) or (recalled, sent)
    messages = [system, *recalled, *sent, *lent, user]
    takes_images = choice is not None and choice.vision
    if settings.vision_model and not takes_images and vision.has_images(messages):
        settings = settings.model_copy(update={"model": settings.vision_model})
    models.price(turn, settings.models.get(settings.model))  # the model that answers
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


def _recalled(summary: str | None) -> list[ChatMessage]:
    """A conversation's summary as the model reads it, just after the system prompt."""
    return [{"role": "system", "content": SUMMARY_HEAD + summary}] if summary else []


def _tokens(messages: list[ChatMessage]) -> int:
    return sum(map(estimate_tokens, messages))


async def _compact(
    turn: Turn, settings: Settings, summary: str | None, past: list[ChatMessage], budget: int
) -> tuple[list[ChatMessage], list[ChatMessage]] | None:
    """The history outgrew what is sent: the model summarises its older part (with the summary so
    far), and the history keeps that summary in place of it. Half the room goes to the recent
    messages kept as they are, so that summaries come seldom. Returns (the summary as sent, the
    messages sent); None if the summary failed (the caller leaves the oldest out, as without)."""
    history = turn.app.history
    assert history is not None  # only called with one
    room = budget - settings.summary_tokens
    kept = fit_history(past, room // 2, settings.context_messages // 2)
    # All of it (not just what `past` holds): nothing older than `kept` is left unsummarised.
    everything = (await history.load(turn))[:-1]  # but the user's message, just stored
    older = everything[: max(len(everything) - len(kept), 0)]
    written = await _summarize(turn, settings, summary, older)
    if written is None:
        return None
    await history.compact(turn, written, keep=len(kept) + 1)  # + the user's message
    recalled = _recalled(written)
    return recalled, fit_history(kept, budget - _tokens(recalled), settings.context_messages)


async def _summarize(
    turn: Turn, settings: Settings, summary: str | None, older: list[ChatMessage]
) -> str | None:
    """The model's summary of `summary` followed by `older`; None (logged) if the request fails
    or comes back empty: a summary never fails the answer."""
    lines = []
    for message in older:
        text = _text_of(message)
        if message.get("role") in ("user", "assistant") and text:
            lines.append(f"{message['role']}: {text[:SUMMARY_INPUT_CHARS]}")
    earlier = f"The summary so far:\n{summary}\n\n" if summary else ""
    # The request must fit the context too: after summaries failed for a while the older part
    # is the whole stored history, and a request too long fails again on every turn. The
    # newest lines go first; the oldest were long left out of answers anyway.
    room = settings.context_tokens - settings.summary_tokens
    room -= estimate_tokens({"role": "user", "content": SUMMARY_PROMPT + earlier}) + 12
    fitting: list[str] = []
    for line in reversed(lines):
        room -= estimate_tokens({"role": "user", "content": line}) - 3  # 4 a message, 1 a gap
        if room < 0:
            break
        fitting.append(line)
    lines = fitting[::-1]
    if not lines:  # nothing a summary could say (tool results only), or no room to say it
        return None
    request: dict[str, Any] = {
        "model": settings.summary_model or settings.model,
        "messages": [
            {"role": "system", "content": SUMMARY_PROMPT},
            {"role": "user", "content": earlier + "The conversation:\n" + "\n\n".join(lines)},
        ],
        "max_completion_tokens": settings.summary_tokens,
    }
    try:
        async with turn.chat_action("typing"):  # the answer waits for it
            with turn.app.metrics.timed("llm_seconds", plugin=PLUGIN, model=request["model"]):
                response = await _create(turn, request, stream=False)
    except Exception as exc:
        log.warning(
            "update %s: summarising the history failed, leaving its oldest part out: %r",
            turn.update_id,
            exc,
        )
        return None
    _meter(turn, response.usage)
    content = response.choices[0].message.content if response.choices else None
    # A reasoning model served raw thinks in the content: the summary is what follows
    written = reasoning.without_thinking(content or "").strip()
    if not written:
        log.warning("update %s: the history's summary came back empty", turn.update_id)
    return written or None


def _text_of(message: ChatMessage) -> str:
    """A message's text (the text parts of one with images)."""
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict)).strip()
    return str(content or "").strip()


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
            content = reasoning.without_thinking(message.content or "") if message else None
            await _use_tools(turn, settings, messages, content, calls, rounds)
            if content and content.strip():
                said.append(content.strip())
            rounds += 1
    # A non-streamed answer shows no reasoning: its <think> block is left out.
    text = reasoning.without_thinking(message.content or "").strip() if message else ""
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
        history = self.turn.app.history
        content = text[self.offset :].strip()
        if history is None or self.done or not content or content == self.kept:
            return
        self.kept = content
        await history.draft(self.turn, content)

    def stored(self, offset: int) -> None:
        """The text so far is in the history (with tool calls); the next round begins at offset."""
        self.offset, self.kept = offset, ""

    async def drop(self) -> None:
        """/cancel: the user stopped the answer, so its half is not kept."""
        history = self.turn.app.history
        if history is not None and self.kept:
            self.kept = ""
            await history.draft(self.turn, None)


async def _stream(
    turn: Turn, settings: Settings, messages: list[ChatMessage], shown: _Shown | None = None
) -> AsyncIterator[str]:
    """Yield the answer as it arrives; store it once complete (what is shown meanwhile is kept
    as a draft by `shown`)."""
    shown = shown or _Shown(turn)
    parts: list[str] = []  # the answer shown, over all rounds (reasoning is not the answer)
    thought = False
    seen = False  # the user has seen something (reasoning counts)
    pondered = False  # reasoning was shown
    rounds = 0
    started = time.perf_counter()
    stream: Any = None
    try:
        while True:
            said: list[str] = []  # this round's text
            await _close(stream)
            async with turn.chat_action("typing"):
                stream, first, chunks, calls, pieces = await _open_stream(
                    turn, settings, _request(turn, settings, messages)
                )
            if first:
                separator = "\n\n" if parts else ""  # from an earlier round's text, if any
                if separator:
                    parts.append(separator)
                shown.stored(sum(map(len, parts)))
                if separator:
                    yield separator
                piece: str | None = first
                reasoned = False  # this round's reasoning began
                while piece is not None:
                    if not isinstance(piece, Reasoning):  # reasoning is shown, never stored
                        said.append(piece)
                        parts.append(piece)
                    elif not reasoned:
                        reasoned = True
                        if pondered:  # an earlier round's reasoning was shown: a paragraph
                            yield Reasoning("\n\n")
                        pondered = True
                    seen = True
                    yield piece
                    piece = await _next_text(turn, settings, chunks, calls, pieces)
            thought = thought or pieces.thought
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
        if parts or seen:  # it broke after the answer (or its reasoning) began: say so
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
        raise UserError(turn.t("chat.only_reasoning" if thought else "chat.empty_answer"))
    if text := "".join(said).strip():
        await _remember(turn, text)
    shown.done = True


async def _open_stream(
    turn: Turn, settings: Settings, request: dict[str, Any]
) -> tuple[Any, str | None, AsyncIterator[Any], ToolCalls, reasoning.Pieces]:
    """Start a stream and read up to its first text. A stream that breaks before any text was
    shown is asked again (up to openai.max_retries times): the user has seen nothing yet."""
    retries = turn.app.completions.max_retries
    attempt = 0
    while True:
        stream = await _create(turn, request, stream=True)  # the client retries this part
        chunks = stream.__aiter__()
        calls = ToolCalls()  # afresh each attempt: a broken stream's pieces are dropped
        pieces = reasoning.Pieces()
        try:
            first = await _next_text(turn, settings, chunks, calls, pieces)
            return stream, first, chunks, calls, pieces
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
        # Part of the output tokens (and billed as them): metered to be seen, not priced again.
        details = getattr(usage, "completion_tokens_details", None)
        if thinking := getattr(details, "reasoning_tokens", None):
            turn.meter("chat.reasoning_tokens", thinking)


async def _next_text(
    turn: Turn,
    settings: Settings,
    chunks: AsyncIterator[Any],
    calls: ToolCalls,
    pieces: reasoning.Pieces,
) -> str | None:
    """The next non-empty piece of the answer, or of its reasoning (a `Reasoning`, when this
    user sees it); None at the end of the stream. Tool call pieces on the way go to `calls`."""
    while True:
        while (piece := pieces.pop()) is not None:
            if isinstance(piece, Reasoning) and not await reasoning.is_shown(turn, settings):
                continue
            return piece
        if pieces.ended:
            return None
        async for chunk in chunks:
            if chunk.usage is not None:  # the last chunk, with stream_options.include_usage
                _meter(turn, chunk.usage)
            if chunk.choices:
                delta = chunk.choices[0].delta
                if delta.tool_calls:
                    calls.add_deltas(delta.tool_calls)
                pieces.add(delta)
                if pieces.queue:
                    break
        else:
            pieces.end()


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
