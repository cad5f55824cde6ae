"""history: conversations kept in the bot's store (`app.store`), offered as `app.history`, and /clear.

A conversation is one user's private chat, or a whole group (`scope = "chat"`), or one user within
a group (`scope = "user"`); in a forum (or a private chat with topics) each topic is a conversation
of its own (`topic_scope = "topic"`) unless the topics share one (`"chat"`). Where it lives is the
`[store]` table's business (SQLite by default).

"One user" is the sender (`turn.sender_id`): each channel posting in a group has its own
conversation, and anonymous admins share the group's. In a conversation several people share
(a group with `scope = "chat"`), /retry asks again only the sender's own question: each user
message there is stored with its sender (a key the model never sees), and a /retry of someone
else's is refused. Messages stored without a sender (before this, or under `scope = "user"`)
count as anyone's.

Each such scope may keep several conversations: /new sets the current one aside, /chats goes back
to one (saved.py). The chat plugin may `compact` a long conversation: a summary it wrote is kept in
place of the older messages, and /clear forgets both. Messages live in the store's lists
(namespace "history"), so every backend keeps them the same way.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import Field

from botcore import (
    App,
    ChatMessage,
    Command,
    Reply,
    Store,
    StrictModel,
    Turn,
    UserError,
    hookimpl,
)

from . import saved
from .saved import CHATS, LISTS, key_of


class Settings(StrictModel):
    """[plugins.history]"""

    scope: Literal["chat", "user"] = "chat"
    """In groups: one conversation per chat, or one per user. Private chats are always per user."""
    topic_scope: Literal["topic", "chat"] = "topic"
    """In forums and private chats with topics: one conversation per topic (General is the
    chat's), or one shared by all topics. Topics are answered at once, so with "chat" questions
    asked at the same moment in two topics do not see each other."""
    max_messages: int = Field(200, ge=2, le=100_000)
    """Older messages of a conversation are deleted past this many."""
    max_age_days: float = Field(30, ge=0)
    """Messages older than this are forgotten (0 keeps them forever)."""
    idle_minutes: float = Field(0, ge=0)
    """A conversation idle this long is over: the next message starts afresh (0: never)."""
    max_saved: int = Field(20, ge=1, le=100)
    """Conversations kept per chat (or user, or topic) by /new; the oldest past this are deleted."""
    title_model: str | None = None
    """Title a conversation /new sets aside with this model (metered as chat tokens); unset:
    its first words."""


EXPIRE_EVERY = 3600.0
SUMMARIES = "history.summaries"
"""Records: a conversation key -> {"content": the summary of its older part, "at": unix time}."""
DRAFTS = "history.drafts"
"""The store namespace of answers being shown: conversation key -> {"update", "content"}."""
INTERRUPTED = " … [interrupted]"
"""How a shown answer that never finished (a kill, a broken stream) ends in the history, so the
model knows it was cut off."""

SENDER = "botcore.sender"
"""The key of a stored user message that names its sender; removed before anyone reads it."""
CURRENT = "history.current"
"""`turn.extra` key: the turn's (scope, conversation key), worked out once per turn."""
LOADED = "history.loaded"
"""`turn.extra` key: the turn's conversation as loaded whole, until something changes it: a
turn that loads it twice (documents, then chat) reads the store once."""


def _unmarked(message: ChatMessage) -> ChatMessage:
    """A stored message as the chat plugin (and the model) may see it: without its sender."""
    if SENDER not in message:
        return message
    return {k: v for k, v in message.items() if k != SENDER}


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ":")


class History:
    """The HistoryStore for the chat plugin: turns mapped to conversation keys, retention applied."""

    def __init__(self, store: Store, settings: Callable[[], Settings]) -> None:
        self.store = store
        self._settings = settings
        self._last_expire = 0.0
        self._moved: dict[int, int] = {}
        """Groups that became supergroups: turns begun in the old one keep to the new key."""
        self._drafting: dict[str, int] = {}
        """Conversations with an answer being shown by this process, and the update it answers."""

    @property
    def settings(self) -> Settings:
        """[plugins.history] as it is now: asked at every use, so a setting changed in chat (on
        any instance) applies from the next turn on."""
        return self._settings()

    def scope(self, turn: Turn) -> str:
        """Whose conversations a turn's are: a private chat's, a group's or a user's in it, a
        topic's (the key of its conversation 0, as all keys were before saved conversations)."""
        settings = self.settings
        key = f"chat:{self._moved.get(turn.chat_id, turn.chat_id)}"
        if turn.topic_id is not None and settings.topic_scope == "topic":
            key += f":topic:{turn.topic_id}"
        if not turn.is_private and settings.scope == "user":
            key += f":user:{turn.sender_id}"
        return key

    async def conversation(self, turn: Turn) -> str:
        """The key of the turn's current conversation (one read of the store per turn)."""
        found = turn.extra.get(CURRENT)
        if found is None:
            scope = self.scope(turn)
            index = await self.store.get(CHATS, scope)
            current = int(index.get("current", 0)) if isinstance(index, dict) else 0
            found = turn.extra[CURRENT] = (scope, key_of(scope, current))
        return str(found[1])

    def switched(self, turn: Turn, scope: str, key: str) -> None:
        """The turn made `key` its scope's current conversation (/new, a /chats button)."""
        turn.extra[CURRENT] = (scope, key)
        self._changed(turn)

    def _changed(self, turn: Turn) -> None:
        """Something changed the turn's conversation: the next load reads the store again."""
        turn.extra.pop(LOADED, None)

    def shared(self, turn: Turn) -> bool:
        """Whether several senders speak in the turn's conversation (a group's, shared)."""
        return not turn.is_private and self.settings.scope == "chat"

    def _oldest_kept(self) -> float:
        days = self.settings.max_age_days
        return time.time() - days * 86400 if days else 0.0

    async def load(self, turn: Turn, *, limit: int | None = None) -> list[ChatMessage]:
        """The conversation (its newest `limit` messages), oldest first, within the retention
        limits; [] once it went idle."""
        kept = self.settings.max_messages
        wanted = kept if limit is None else min(limit, kept)
        loaded = turn.extra.get(LOADED)
        if loaded is not None and loaded[0] >= wanted:
            return list(loaded[1][-wanted:] if wanted > 0 else [])
        key = await self.conversation(turn)
        await self._fold(key, turn.update_id)
        if self.settings.idle_minutes:
            recent = time.time() - self.settings.idle_minutes * 60
            if not await self.store.list_read(LISTS, key, limit=1, since=recent):
                await self.forget(key)
                turn.extra[LOADED] = (kept, [])
                return []
        past = await self.store.list_read(LISTS, key, limit=wanted, since=self._oldest_kept())
        found = [_unmarked(message) for message in past]
        turn.extra[LOADED] = (wanted if len(found) == wanted else kept, found)
        return list(found)

    async def summary(self, turn: Turn) -> str | None:
        """The summary kept in place of the conversation's older part, if retention still keeps
        it (an idle conversation's is gone with it: `load` runs first)."""
        found = await self.store.get(SUMMARIES, await self.conversation(turn))
        if not isinstance(found, dict) or float(found.get("at", 0)) < self._oldest_kept():
            return None
        return str(found.get("content") or "") or None

    async def compact(self, turn: Turn, summary: str, *, keep: int) -> None:
        """Keep `summary` in place of all but the newest `keep` messages, which stay as they
        are: the conversation outgrew what the model is sent."""
        key = await self.conversation(turn)
        await self.store.put(SUMMARIES, key, {"content": summary, "at": time.time()})
        past = await self.store.list_read(
            LISTS, key, limit=self.settings.max_messages, since=self._oldest_kept()
        )
        await self.store.list_set(LISTS, key, past[-keep:] if keep > 0 else [])
        self._changed(turn)

    async def append(self, turn: Turn, *messages: ChatMessage) -> None:
        """Add messages (a user's marked with its sender, in a shared conversation): durable
        once this returns. They replace the turn's draft (the answer being shown is now stored
        whole, or the part before a tool call is)."""
        key = await self.conversation(turn)
        sender = turn.sender_id if self.shared(turn) else None
        marked = [
            {**m, SENDER: sender} if m.get("role") == "user" and sender is not None else m
            for m in messages
        ]
        await self.store.list_push(LISTS, key, marked, keep=self.settings.max_messages)
        loaded = turn.extra.get(LOADED)
        if loaded is not None:  # still the whole conversation (within `keep`) with these added
            found = [*loaded[1], *(_unmarked(m) for m in marked)]
            turn.extra[LOADED] = (loaded[0], found[-self.settings.max_messages :])
        if self._drafting.get(key) == turn.update_id:
            del self._drafting[key]
            await self.store.put(DRAFTS, key, None)
        if self.settings.max_age_days and time.time() - self._last_expire > EXPIRE_EVERY:
            await self.expire()

    async def draft(self, turn: Turn, content: str | None) -> None:
        """The turn's answer as far as the user has seen it, kept beside the conversation until
        `append` stores it: after a kill -9 the next `load` adds it, marked as interrupted.
        None drops it (/cancel: the user chose to stop it)."""
        key = await self.conversation(turn)
        if content is None:
            if self._drafting.pop(key, None) is not None:
                await self.store.put(DRAFTS, key, None)
            return
        self._drafting[key] = turn.update_id
        await self.store.put(DRAFTS, key, {"update": turn.update_id, "content": content})

    async def _fold(self, key: str, update_id: int) -> None:
        """A draft another turn left unfinished (its process was killed, or its stream broke)
        joins the conversation, marked: it is what the user saw."""
        found = await self.store.get(DRAFTS, key)
        if not isinstance(found, dict) or found.get("update") == update_id:
            return
        # (With topic_scope = "chat", a draft another topic's turn is showing right now is
        # taken too; its final answer then follows it: a repeat, never a loss.)
        self._drafting.pop(key, None)
        content = str(found.get("content") or "").rstrip()
        if content:
            message = {"role": "assistant", "content": content + INTERRUPTED}
            await self.store.list_push(LISTS, key, [message], keep=self.settings.max_messages)
        await self.store.put(DRAFTS, key, None)

    async def forget(self, key: str) -> None:
        """Delete a conversation: its messages, its summary, its draft."""
        await self.store.list_set(LISTS, key, [])
        await self.store.put(SUMMARIES, key, None)
        self._drafting.pop(key, None)
        await self.store.put(DRAFTS, key, None)

    async def clear(self, turn: Turn) -> None:
        """Forget the current conversation (its summary and title too); saved ones stay."""
        key = await self.conversation(turn)
        await self.forget(key)
        self._changed(turn)
        scope = self.scope(turn)
        if await self.store.get(CHATS, scope) is not None:
            async with self.store.lock(f"history:{scope}"):
                index = await self.store.get(CHATS, scope)
                for entry in index.get("chats", []) if isinstance(index, dict) else []:
                    if key_of(scope, entry.get("id")) == key:
                        entry["title"] = None
                await self.store.put(CHATS, scope, index)

    async def rewind(self, turn: Turn) -> ChatMessage | None:
        """Drop the last user message and what followed it; return that message. In a shared
        conversation, a UserError (and nothing dropped) if someone else sent it."""
        key = await self.conversation(turn)
        await self._fold(key, turn.update_id)
        past = await self.store.list_read(
            LISTS, key, limit=self.settings.max_messages, since=self._oldest_kept()
        )
        last = next(
            (i for i in range(len(past) - 1, -1, -1) if past[i].get("role") == "user"), None
        )
        if last is None:
            return None
        sender = past[last].get(SENDER)
        if self.shared(turn) and sender is not None and sender != turn.sender_id:
            raise UserError(turn.t("history.not_yours"))
        await self.store.list_set(LISTS, key, past[:last])
        self._changed(turn)
        return _unmarked(past[last])

    async def move_chat(self, old: int, new: int) -> None:
        """A group became supergroup `new`: its conversations go on there (the answer still
        being written in the old one is stored there too), saved ones and summaries too."""
        self._moved[old] = new
        await self.store.list_rename(LISTS, f"chat:{old}", f"chat:{new}")
        for namespace in (CHATS, SUMMARIES):  # rare, so a scan of the namespace will do
            for key, value in (await self.store.scan(namespace)).items():
                if _under(key, f"chat:{old}"):
                    target = f"chat:{new}" + key[len(f"chat:{old}") :]
                    if await self.store.get(namespace, target) is None:
                        await self.store.put(namespace, target, value)
                    await self.store.put(namespace, key, None)

    async def expire(self) -> None:
        """Delete what retention no longer keeps (hourly, and at start-up)."""
        self._last_expire = time.time()
        if self.settings.max_age_days:
            oldest = self._oldest_kept()
            await self.store.list_expire(LISTS, oldest)
            for key, found in (await self.store.scan(SUMMARIES)).items():
                if not isinstance(found, dict) or float(found.get("at", 0)) < oldest:
                    await self.store.put(SUMMARIES, key, None)


_histories: weakref.WeakKeyDictionary[App, History] = weakref.WeakKeyDictionary()


def _settings_of(app: App) -> Callable[[], Settings]:
    """`app.settings(Settings)` as a function that does not keep the app alive (a History is
    kept per app in a weak dictionary, which a strong reference back would defeat)."""
    ref = weakref.ref(app)

    def current() -> Settings:
        found = ref()
        assert found is not None, "the bot this history belongs to is gone"
        return found.settings(Settings)

    return current


@hookimpl
def settings_model() -> type[Settings]:
    return Settings


@hookimpl
def register_texts() -> dict[str, dict[str, str]]:
    return {
        "en": {
            "history.clear": "Forget our conversation",
            "history.cleared": "Done: I have forgotten our conversation.",
            "history.not_yours": "The last question here was someone else's: only they can "
            "/retry it. Send your question again instead.",
            **saved.TEXTS["en"],
        },
        "ru": {
            "history.clear": "Забыть наш разговор",
            "history.cleared": "Готово: я забыл наш разговор.",
            "history.not_yours": "Последний вопрос здесь задал кто-то другой: повторить его "
            "(/retry) может только он. Отправьте свой вопрос заново.",
            **saved.TEXTS["ru"],
        },
    }


@hookimpl
def register_commands(app: App) -> Sequence[Command]:
    return [
        Command("clear", clear, help=app.translations("history.clear")),
        Command("new", new, help=app.translations("history.new")),
        Command("chats", chats, help=app.translations("history.chats")),
    ]


@hookimpl
async def button_pressed(turn: Turn, data: str) -> Reply | str | None:
    if data.startswith(saved.PREFIX):
        return await saved.switch(turn, _histories[turn.app], data)
    return None


@hookimpl
async def startup(app: App) -> None:
    history = History(app.store, _settings_of(app))
    await history.expire()
    _histories[app] = history


@hookimpl
async def chat_moved(app: App, old_chat_id: int, new_chat_id: int) -> None:
    history = _histories.get(app)
    if history is not None:
        await history.move_chat(old_chat_id, new_chat_id)


@hookimpl(trylast=True)
def history_store(app: App) -> History | None:
    return _histories.get(app)


async def clear(turn: Turn) -> str:
    """/clear: wipe the current conversation."""
    await _histories[turn.app].clear(turn)
    return turn.t("history.cleared")


async def new(turn: Turn) -> str:
    """/new: keep the current conversation and start another."""
    return await saved.new(turn, _histories[turn.app])


async def chats(turn: Turn) -> Reply | str:
    """/chats: the saved conversations, a button each to go back to one."""
    return await saved.listing(turn, _histories[turn.app])
