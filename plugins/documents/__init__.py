"""documents: PDF, DOCX, TXT, Markdown, HTML and CSV files a user sends become part of the conversation.

A document's text is extracted (extract.py, in a worker thread, capped), cut into chunks and kept
in `app.store` under the history's conversation key; the history gets a short user message, the
marker ("[document: report.pdf, 12 pages]"), so the model knows the file is there. For every later
question in that conversation, the chunks that best match it (BM25, rank.py; blended with the
cosine of their embeddings when `embeddings` names a model, embed.py) go to the chat plugin
for that one request as `turn.extra["chat.context"]` (docs/plugin-guide.md, "Extra context for one
request"). A caption is such a question, answered at once: the document message becomes a text
message (the marker, then the caption) that the chat plugin answers as any other.

A document lives as long as its marker does: once the history no longer holds it (/clear, /retry,
retention), the document is deleted too, checked at the conversation's next message and at the end
of every command (so /clear forgets the documents at once). List this plugin after `voice`, so
that spoken questions find the documents too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import Field

from botcore import App, ChatMessage, Handler, StrictModel, Text, Turn, UserError, hookimpl

from . import embed
from .extract import Extracted, Refused, extract, kind_of
from .rank import bm25, chunks

log = logging.getLogger(__name__)

INDEX = "documents"
"""Store namespace: conversation key -> the documents attached to it, oldest first."""
PARTS = "documents.parts"
"""Store namespace: "<conversation key>/<document id>" -> its chunks, [[label, text], ...]."""
CONTEXT = "chat.context"
"""The turn.extra key the chat plugin reads excerpts from (a list of strings, most wanted first)."""
RELEVANT = 0.2
"""A part scoring below this share of the best part's score is not lent."""
SEMANTIC = 0.7
"""With embeddings, the share of a part's score that is its cosine with the question (the rest
is BM25: a name or a number the question quotes still counts)."""
RELEVANT_BLENDED = 0.5
"""With embeddings, a part scoring below this share of the best part's is not lent: a word
common to every part (BM25 gives it full marks when nothing else matches) must not carry one
that means something else."""
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic"}
_EXTRACTING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="documents")
"""Two documents read at once, whatever the number of turns: bounds their CPU and memory."""


class Settings(StrictModel):
    """[plugins.documents]"""

    max_mb: float = Field(20, gt=0, le=2000)
    """Larger files are refused before they are downloaded (the cloud Bot API stops at 20 MB)."""
    max_pages: int = Field(300, ge=1)
    """Pages of a PDF read; the rest is left out, and the user is told."""
    max_chars: int = Field(500_000, ge=1000)
    """Characters of text kept from one document; the rest is left out, and the user is told."""
    chunk_chars: int = Field(1500, ge=200, le=20_000)
    """The size of the parts a document is cut into and ranked by."""
    context_tokens: int = Field(3000, ge=100)
    """How much of the attached documents goes with one question (the chat plugin counts it
    against its own `context_tokens`)."""
    max_documents: int = Field(5, ge=1, le=100)
    """Documents kept per conversation; the oldest goes first."""
    groups: Literal["addressed", "all", "off"] = "addressed"
    """In groups read documents that mention the bot or reply to it (addressed), all, or none."""
    embeddings: str | None = None
    """An embedding model at the [openai] endpoint (e.g. "text-embedding-3-small"): parts are
    then ranked by meaning as well as by words. Unset: BM25 alone."""
    embedding_dimensions: int | None = Field(None, ge=1)
    """Ask for shorter vectors (text-embedding-3 models allow it): less to keep per document."""
    embeddings_max_parts: int = Field(500, ge=1)
    """A document with more parts is not embedded: questions are ranked by words alone (this
    bounds the vectors kept per document)."""
    embeddings_timeout: float = Field(15, gt=0, le=300)
    """Seconds the embeddings of one question may take before BM25 ranks alone."""


@hookimpl
def settings_model() -> type[Settings]:
    return Settings


@hookimpl
def startup(app: App) -> None:
    if app.settings(Settings).embeddings:
        app.require_openai()  # a missing [openai] key fails start-up, not the first question


@hookimpl
def register_texts() -> dict[str, dict[str, str]]:
    return {
        "en": {
            "documents.read": "I have read {name} ({size}). Ask me anything about it.",
            "documents.partly": "It is long: I read only {part} of it.",
            "documents.pages": "{pages} pages",
            "documents.words": "{words} words",
            "documents.first_pages": "the first {pages} pages",
            "documents.first_chars": "the first {chars} characters",
            "documents.no_history": "I can only answer about {name} right away: send it again "
            "with your question in the caption.",
            "documents.too_big": "{name} is too big: I read documents of up to {limit_mb} MB.",
            "documents.encrypted": "{name} is protected with a password, so I cannot read it. "
            "Please send a copy without the password.",
            "documents.corrupt": "I could not read {name}: the file is damaged or is not what "
            "its name says.",
            "documents.empty": "{name} has no text in it.",
            "documents.scanned": "{name} has no text layer: its pages are scanned images. Send "
            "a PDF with selectable text, or the pages as photos.",
            "documents.unsupported": "I cannot read {name}: I read PDF, DOCX, TXT, Markdown, "
            "HTML and CSV files.",
        },
        "ru": {
            "documents.read": "Я прочитал {name} ({size}). Спрашивайте о нём что угодно.",
            "documents.partly": "Он длинный: я прочитал только {part}.",
            "documents.pages": "страниц: {pages}",
            "documents.words": "слов: {words}",
            "documents.first_pages": "первые страницы ({pages})",
            "documents.first_chars": "начало (символов: {chars})",
            "documents.no_history": "О файле {name} я могу ответить только сразу: пришлите его "
            "ещё раз с вопросом в подписи.",
            "documents.too_big": "Файл {name} слишком большой: я читаю документы до {limit_mb} МБ.",
            "documents.encrypted": "Файл {name} защищён паролем, и прочитать его я не могу. "
            "Пришлите, пожалуйста, копию без пароля.",
            "documents.corrupt": "Не получилось прочитать {name}: файл повреждён или это не то, "
            "что говорит его имя.",
            "documents.empty": "В файле {name} нет текста.",
            "documents.scanned": "В {name} нет текстового слоя: его страницы — отсканированные "
            "картинки. Пришлите PDF с выделяемым текстом или страницы фотографиями.",
            "documents.unsupported": "Не могу прочитать {name}: я читаю файлы PDF, DOCX, TXT, "
            "Markdown, HTML и CSV.",
        },
    }


@hookimpl
def register_handlers() -> Sequence[Handler]:
    return [Handler({"document"}, unsupported, name="documents.unsupported")]


@hookimpl
async def pre_message(turn: Turn) -> Text | None:
    """A document: read it and keep it (a caption turns it into a question). A question: lend
    the chat plugin the parts of the conversation's documents that match it."""
    if turn.kind == "document":
        return await receive(turn)
    if turn.kind == "text" and turn.text and _wanted(turn):
        await lend(turn, turn.text)
    return None


@hookimpl
async def turn_end(turn: Turn) -> None:
    """After a command (/clear, /retry), forget the documents whose marker it removed."""
    if turn.kind == "command":
        key = await _conversation(turn)
        if key is not None and await turn.app.store.get(INDEX, key):
            await attached(turn, key)


async def unsupported(turn: Turn) -> str | None:
    """A file no plugin before this one took, and no image: say which files are read."""
    document = turn.message.document
    if document is None or _image(document.file_name, document.mime_type) or not _wanted(turn):
        return None
    if kind_of(document.file_name, document.mime_type) is not None:
        return None  # read in pre_message (unless the turn was not for us)
    return turn.t("documents.unsupported", name=document.file_name or "?")


async def receive(turn: Turn) -> Text | None:
    """Read the document of a turn and attach it to the conversation; answer a caption at once."""
    document = turn.message.document
    if document is None or not _wanted(turn):
        return None
    kind = kind_of(document.file_name, document.mime_type)
    if kind is None or _image(document.file_name, document.mime_type):
        return None  # an image for vision, or a type the handler answers
    settings = turn.app.settings(Settings)
    name = document.file_name or f"document.{kind}"
    if document.file_size is not None and document.file_size > settings.max_mb * 1024 * 1024:
        raise UserError(turn.t("documents.too_big", name=name, limit_mb=f"{settings.max_mb:g}"))
    async with turn.chat_action("typing"):
        data = await turn.download(document.file_id, size=document.file_size)
        if len(data) > settings.max_mb * 1024 * 1024:  # a local Bot API server may not say
            raise UserError(turn.t("documents.too_big", name=name, limit_mb=f"{settings.max_mb:g}"))
        read = functools.partial(
            extract, data, kind, max_chars=settings.max_chars, max_pages=settings.max_pages
        )
        try:
            found = await asyncio.get_running_loop().run_in_executor(_EXTRACTING, read)
        except Refused as refused:
            log.info("update %s: %s refused (%s)", turn.update_id, kind, refused.reason)
            raise UserError(turn.t(f"documents.{refused.reason}", name=name)) from None
    parts = chunks(found.sections, settings.chunk_chars)
    marker = _marker(name, found)
    question = _question(turn)
    key = await _conversation(turn)
    fresh = {"id": uuid.uuid4().hex[:12], "name": name, "marker": marker, "parts": len(parts)}
    if key is not None:
        await _attach(turn, key, fresh, parts)
    if question:
        turn.kind = "text"
        turn.text = f"{marker}\n{question}"
        await lend(turn, question, fresh=(fresh, parts))
        return None
    if key is None or turn.app.history is None:
        raise UserError(turn.t("documents.no_history", name=name))
    await turn.app.history.append(turn, {"role": "user", "content": _said(turn, marker)})
    size = (
        turn.t("documents.pages", pages=found.pages)
        if found.pages
        else turn.t("documents.words", words=found.words)
    )
    answer = turn.t("documents.read", name=name, size=size)
    if found.truncated:
        part = (
            turn.t("documents.first_pages", pages=found.read_pages)
            if found.read_pages and found.read_pages < (found.pages or 0)
            else turn.t("documents.first_chars", chars=found.chars)
        )
        answer += " " + turn.t("documents.partly", part=part)
    return Text(answer)


async def lend(
    turn: Turn, question: str, fresh: tuple[dict[str, Any], list[Any]] | None = None
) -> None:
    """Put the parts of the conversation's documents that best match `question` (within
    `context_tokens`) into `turn.extra["chat.context"]` for the chat plugin."""
    key = await _conversation(turn)
    new = fresh[0]["id"] if fresh is not None else None
    documents = await attached(turn, key, new) if key is not None else []
    if fresh is not None and fresh[0]["id"] not in {d["id"] for d in documents}:
        documents.append(fresh[0])
    if not documents:
        return
    candidates: list[tuple[int, int, str]] = []  # (document, part, text as the model reads it)
    texts: list[tuple[dict[str, Any], list[str]]] = []  # each document's parts, for embeddings
    for number, document in enumerate(documents):
        if fresh is not None and document["id"] == fresh[0]["id"]:
            parts = fresh[1]
        else:
            parts = await turn.app.store.get(PARTS, f"{key}/{document['id']}") or []
        texts.append((document, [text for _, text in parts]))
        for index, (label, text) in enumerate(parts):
            where = ", ".join(filter(None, [label, f"part {index + 1} of {len(parts)}"]))
            heading = f"From the document {document['name']} the user sent ({where}):"
            candidates.append((number, index, f"{heading}\n{text}"))
    settings = turn.app.settings(Settings)
    budget = settings.context_tokens
    meaning = None
    if settings.embeddings and sum(_tokens(text) for *_, text in candidates) > budget:
        meaning = await embed.similarity(turn, settings, key, question, texts)
    chosen = _choose(question, candidates, budget, meaning)
    if chosen:
        turn.extra.setdefault(CONTEXT, []).extend(chosen)


def _choose(
    question: str,
    candidates: list[tuple[int, int, str]],
    budget: int,
    meaning: list[float] | None = None,
) -> list[str]:
    """All the parts if they fit; else the best-ranked that fit, in document order. A question
    that names nothing in them (a summary) gets the newest document from its beginning.
    `meaning`: each part's cosine with the question (embeddings), blended into the ranking."""
    if sum(_tokens(text) for *_, text in candidates) <= budget:
        return [text for *_, text in candidates]
    scores = bm25(question, [text for *_, text in candidates])
    share = RELEVANT
    if meaning is not None and len(meaning) == len(scores) and max(meaning) > 0:
        share = RELEVANT_BLENDED
        closest, best = max(meaning), max(scores) or 1.0
        scores = [
            SEMANTIC * max(near, 0.0) / closest + (1 - SEMANTIC) * score / best
            for near, score in zip(meaning, scores, strict=True)
        ]
    if any(scores):
        # Parts that share only a common word with the question ("about") are noise beside
        # those that name its subject: they are left out, not sent to fill the budget.
        floor = max(scores) * share
        order = sorted(
            (i for i, score in enumerate(scores) if score >= floor), key=lambda i: -scores[i]
        )
    else:
        newest = max(number for number, *_ in candidates)
        order = [i for i, c in enumerate(candidates) if c[0] == newest]
    kept: list[int] = []
    for i in order:
        cost = _tokens(candidates[i][2])
        if cost <= budget:
            kept.append(i)
            budget -= cost
    return [candidates[i][2] for i in sorted(kept)]


async def attached(turn: Turn, key: str, new: str | None = None) -> list[dict[str, Any]]:
    """The documents attached to the conversation whose marker the history still holds; the
    others (cleared, rewound, expired) are deleted here. Document `new` is kept: its marker
    reaches the history with the question the chat plugin is about to store."""
    index: list[dict[str, Any]] = await turn.app.store.get(INDEX, key) or []
    if not index:
        return []
    history = turn.app.history
    said = [_content(m) for m in await history.load(turn)] if history is not None else []
    kept = [d for d in index if d["id"] == new or any(d["marker"] in text for text in said)]
    if len(kept) < len(index):
        gone = {d["id"] for d in index} - {d["id"] for d in kept}
        store = turn.app.store
        async with store.lock(f"documents:{key}"):  # one attached meanwhile stays
            now: list[dict[str, Any]] = await store.get(INDEX, key) or []
            await store.put(INDEX, key, [d for d in now if d["id"] not in gone] or None)
        for name in gone:
            await store.put(PARTS, f"{key}/{name}", None)
            await store.put(embed.VECTORS, f"{key}/{name}", None)
    return kept


async def _attach(
    turn: Turn, key: str, document: dict[str, Any], parts: list[tuple[str | None, str]]
) -> None:
    """Keep a document's parts, and name it in the conversation's index (dropping the oldest)."""
    store = turn.app.store
    await store.put(PARTS, f"{key}/{document['id']}", [list(part) for part in parts])
    # Topics that share a conversation are answered at once, and instances share the store.
    async with store.lock(f"documents:{key}"):
        index: list[dict[str, Any]] = await store.get(INDEX, key) or []
        index.append(document)
        limit = turn.app.settings(Settings).max_documents
        for gone in index[:-limit]:
            await store.put(PARTS, f"{key}/{gone['id']}", None)
            await store.put(embed.VECTORS, f"{key}/{gone['id']}", None)
        await store.put(INDEX, key, index[-limit:])


async def _conversation(turn: Turn) -> str | None:
    """The history's key for the turn's conversation: documents are kept beside the
    conversation they belong to. None (no history): nothing can be kept."""
    history = turn.app.history
    return None if history is None else await history.conversation(turn)


def _marker(name: str, found: Extracted) -> str:
    """What the history says of a document (in English: it is for the model)."""
    name = re.sub(r"[\[\]\n]", " ", name)
    size = f"{found.pages} pages" if found.pages else f"{found.words} words"
    if found.truncated:
        size += (
            f", only the first {found.read_pages} read"
            if found.read_pages and found.read_pages < (found.pages or 0)
            else f", only the first {found.chars} characters read"
        )
    return f"[document: {name}, {size}]"


def _said(turn: Turn, text: str) -> str:
    """A user message as the chat plugin stores one: in a group, with the sender's name."""
    sender = turn.message.from_user
    return text if turn.is_private or sender is None else f"{sender.first_name}: {text}"


def _question(turn: Turn) -> str:
    """The caption without the bot's @name."""
    text = turn.text or ""
    if turn.app.bot_username:
        text = re.sub(rf"@{re.escape(turn.app.bot_username)}\b", "", text, flags=re.I)
    return text.strip()


def _content(message: ChatMessage) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _tokens(text: str) -> int:
    """The chat plugin's estimate: ~3 characters a token, UTF-8 aware."""
    return max(len(text) // 3, len(text.encode()) // 4) + 4


def _image(file_name: str | None, mime_type: str | None) -> bool:
    return (mime_type or "").lower().startswith("image/") or PurePosixPath(
        file_name or ""
    ).suffix.lower() in IMAGE_SUFFIXES


def _wanted(turn: Turn) -> bool:
    """The `groups` rule, as the chat plugin's: in groups only what it lets through."""
    groups = turn.app.settings(Settings).groups
    return turn.is_private or not (
        groups == "off" or (groups == "addressed" and not turn.addressed)
    )
