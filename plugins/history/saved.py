"""Saved conversations: /new sets the current one aside and starts another; /chats lists them, each
with a button that makes it the current one again.

A scope (a private chat, a group, a user in it, a topic: `History.scope`) has one record in
`CHATS` once /new is used there, naming its conversations oldest-used first and which is current.
Titles are the first words of a conversation's first question, or (with `title_model`) the
model's, fixed when the conversation is set aside.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from botcore import Button, ChatMessage, Text, Turn

if TYPE_CHECKING:
    from . import History

log = logging.getLogger(__name__)
LISTS = "history"
"""The store namespace of the conversations' lists (a conversation key -> its messages)."""
CHATS = "history.chats"
"""Records: a scope (see `History.scope`) -> its saved conversations, once /new was used there:
{"current": id, "chats": [{"id": id, "title": str | None}, ...]}, least recently used first.
Conversation 0 is keyed by the scope itself (as every conversation was before /new), conversation
n by scope + ":saved:" + n, so a group's move renames them all."""
PREFIX = "chats:"
"""Button data of a saved conversation: PREFIX + its number."""
TITLE_CHARS = 40
TITLE_PROMPT = (
    "Title the conversation below in at most five words, in its language. "
    "Answer with the title only."
)
"""The system prompt of a title request (the fake OpenAI's tests recognise it by this text)."""

TEXTS = {
    "en": {
        "history.new": "Start a new conversation (this one is kept)",
        "history.chats": "Your saved conversations",
        "history.new_started": "A new conversation begins. The previous one is kept: /chats "
        "goes back to it.",
        "history.new_already": "This conversation is new already: write me something.",
        "history.chats_list": "Your conversations (• the current one). Tap one to go back to it:",
        "history.no_chats": "There is only this conversation so far: /new starts another and "
        "keeps this one.",
        "history.untitled": "New conversation",
        "history.switched": "Back to “{title}”: I remember where we were.",
        "history.chat_gone": "That conversation is no longer kept.",
        "history.switched_empty": "Back to “{title}”: its messages are too old to be kept, "
        "so we start it afresh.",
        "history.new_not_kept": "A new conversation begins. The previous one is not kept: "
        "this bot keeps only the current conversation.",
        "history.only_one": "This bot keeps only the current conversation: /new starts "
        "another in its place.",
    },
    "ru": {
        "history.new": "Начать новый разговор (этот сохранится)",
        "history.chats": "Ваши сохранённые разговоры",
        "history.new_started": "Начинаем новый разговор. Прежний сохранён: вернуться к нему "
        "можно через /chats.",
        "history.new_already": "Этот разговор и так новый: напишите мне что-нибудь.",
        "history.chats_list": "Ваши разговоры (• текущий). Нажмите, чтобы вернуться к нему:",
        "history.no_chats": "Пока есть только этот разговор: /new начнёт новый, а этот сохранит.",
        "history.untitled": "Новый разговор",
        "history.switched": "Возвращаемся к «{title}»: я помню, на чём мы остановились.",
        "history.chat_gone": "Этот разговор больше не хранится.",
        "history.switched_empty": "Возвращаемся к «{title}»: его сообщения слишком старые и не "
        "сохранились, так что начинаем его заново.",
        "history.new_not_kept": "Начинаем новый разговор. Прежний не сохранён: этот бот "
        "хранит только текущий разговор.",
        "history.only_one": "Этот бот хранит только текущий разговор: /new начнёт новый "
        "вместо него.",
    },
}


def key_of(scope: str, conversation: int) -> str:
    """The list key of a scope's conversation number `conversation`."""
    return scope if conversation == 0 else f"{scope}:saved:{conversation}"


def first_words(messages: list[ChatMessage]) -> str | None:
    """The first words of the first question: a title that costs nothing."""
    for message in messages:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):  # text and image parts
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        text = " ".join(str(content or "").split())
        if text:
            return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1].rstrip() + "…"
    return None


async def _title(turn: Turn, history: History, past: list[ChatMessage]) -> str | None:
    """A set-aside conversation's title: the model's when `title_model` is set (metered like
    any chat call), its first words otherwise or when the model fails."""
    words = first_words(past)
    model = history.settings.title_model
    if model is None or words is None:
        return words
    transcript = "\n".join(
        f"{m['role']}: {first_words([{**m, 'role': 'user'}]) or ''}"
        for m in past[:6]
        if m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str | list)
    )
    request: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": TITLE_PROMPT},
            {"role": "user", "content": transcript},
        ],
        "max_completion_tokens": 30,
    }
    try:
        response = await turn.app.completions.create(request, stream=False)
    except Exception as exc:  # a title is a nicety: the first words will do
        log.warning("update %s: titling the conversation failed: %r", turn.update_id, exc)
        return words
    usage = response.usage
    if usage is not None:
        turn.meter("chat.input_tokens", usage.prompt_tokens or 0)
        turn.meter("chat.output_tokens", usage.completion_tokens or 0)
    content = response.choices[0].message.content if response.choices else None
    title = " ".join(str(content or "").strip().strip("\"'«»“”").split())
    return first_words([{"role": "user", "content": title}]) or words


async def _set_aside(turn: Turn, history: History) -> tuple[str, int, str | None, bool]:
    """The turn's scope, its current conversation, a title for it (computed before any lock:
    it may ask the model), and whether it holds any message."""
    scope = history.scope(turn)
    index = await history.store.get(CHATS, scope)
    current = int(index.get("current", 0)) if isinstance(index, dict) else 0
    titled = isinstance(index, dict) and any(
        c.get("id") == current and c.get("title") for c in index.get("chats", [])
    )
    past = await history.store.list_read(
        LISTS, key_of(scope, current), limit=history.settings.max_messages
    )
    title = None if titled or not past else await _title(turn, history, past)
    return scope, current, title, bool(past)


def _entries(index: Any) -> tuple[int, list[dict[str, Any]]]:
    """(current, saved conversations oldest-used first) of a scope's record (None: only 0)."""
    if not isinstance(index, dict):
        return 0, [{"id": 0, "title": None}]
    chats = [dict(c) for c in index.get("chats", []) if isinstance(c, dict)]
    return int(index.get("current", 0)), chats or [{"id": 0, "title": None}]


async def new(turn: Turn, history: History) -> str:
    """/new: set the current conversation aside (titled) and start an empty one."""
    scope, current, title, used = await _set_aside(turn, history)
    if not used:
        return turn.t("history.new_already")
    store = history.store
    async with store.lock(f"history:{scope}"):  # instances and topics may change it at once
        current, chats = _entries(await store.get(CHATS, scope))
        entry = next((c for c in chats if c["id"] == current), None)
        if entry is None:
            entry = {"id": current, "title": None}
            chats.append(entry)
        entry["title"] = entry.get("title") or title
        fresh = max(c["id"] for c in chats) + 1
        chats.append({"id": fresh, "title": None})
        gone = chats[: max(len(chats) - history.settings.max_saved, 0)]
        await store.put(CHATS, scope, {"current": fresh, "chats": chats[len(gone) :]})
    for old in gone:  # retention: the least recently used past `max_saved`
        await history.forget(key_of(scope, old["id"]))
    history.switched(turn, scope, key_of(scope, fresh))
    if any(old["id"] == current for old in gone):  # max_saved = 1: nothing is set aside
        return turn.t("history.new_not_kept")
    return turn.t("history.new_started")


async def listing(turn: Turn, history: History) -> Text | str:
    """/chats: the scope's conversations, most recently used first, a button each."""
    scope = history.scope(turn)
    current, chats = _entries(await history.store.get(CHATS, scope))
    if len(chats) < 2:
        return turn.t("history.only_one" if history.settings.max_saved < 2 else "history.no_chats")
    rows = []
    for entry in reversed(chats):
        title = entry.get("title")
        if not title:  # the current one, or one set aside before it had a title
            past = await history.store.list_read(
                LISTS, key_of(scope, entry["id"]), limit=history.settings.max_messages
            )
            title = first_words(past) or turn.t("history.untitled")
        mark = "• " if entry["id"] == current else ""
        rows.append([Button(mark + str(title), f"{PREFIX}{entry['id']}")])
    return Text(turn.t("history.chats_list"), buttons=rows)


async def switch(turn: Turn, history: History, data: str) -> str:
    """A /chats button: make that conversation the current one (the turn's own scope's only)."""
    try:
        wanted = int(data.removeprefix(PREFIX))
    except ValueError:
        return turn.t("history.chat_gone")
    store = history.store
    current, chats = _entries(await store.get(CHATS, history.scope(turn)))
    if wanted == current or all(c["id"] != wanted for c in chats):
        title = None  # nothing is set aside: no title to ask the model for (and pay)
        scope = history.scope(turn)
    else:
        scope, current, title, _ = await _set_aside(turn, history)
    async with store.lock(f"history:{scope}"):
        current, chats = _entries(await store.get(CHATS, scope))
        chosen = next((c for c in chats if c["id"] == wanted), None)
        if chosen is None:  # deleted past `max_saved`, or a button of another scope
            return turn.t("history.chat_gone")
        for entry in chats:
            if entry["id"] == current and entry["id"] != wanted:
                entry["title"] = entry.get("title") or title
        chats.remove(chosen)
        chats.append(chosen)  # the most recently used comes last
        await store.put(CHATS, scope, {"current": wanted, "chats": chats})
    history.switched(turn, scope, key_of(scope, wanted))
    name = chosen.get("title")
    if not name:
        past = await store.list_read(
            LISTS, key_of(scope, wanted), limit=history.settings.max_messages
        )
        name = first_words(past) or turn.t("history.untitled")
    elif not await history.load(turn, limit=1):  # retention (max_age_days, idle) took it all
        return turn.t("history.switched_empty", title=name)
    return turn.t("history.switched", title=name)
