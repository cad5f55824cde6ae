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
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import Field

from botcore import App, ChatMessage, Command, Store, StrictModel, Turn, UserError, hookimpl


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


EXPIRE_EVERY = 3600.0
LISTS = "history"
"""The store namespace of the conversations' lists (a conversation key -> its messages)."""
DRAFTS = "history.drafts"
"""The store namespace of answers being shown: conversation key -> {"update", "content"}."""
INTERRUPTED = " … [interrupted]"
"""How a shown answer that never finished (a kill, a broken stream) ends in the history, so the
model knows it was cut off."""

SENDER = "botcore.sender"
"""The key of a stored user message that names its sender; removed before anyone reads it."""


def _unmarked(message: ChatMessage) -> ChatMessage:
    """A stored message as the chat plugin (and the model) may see it: without its sender."""
    if SENDER not in message:
        return message
    return {k: v for k, v in message.items() if k != SENDER}


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

    def conversation(self, turn: Turn) -> str:
        """The conversation key of a turn (keys without topics are those of earlier versions)."""
        settings = self.settings
        key = f"chat:{self._moved.get(turn.chat_id, turn.chat_id)}"
        if turn.topic_id is not None and settings.topic_scope == "topic":
            key += f":topic:{turn.topic_id}"
        if not turn.is_private and settings.scope == "user":
            key += f":user:{turn.sender_id}"
        return key

    def shared(self, turn: Turn) -> bool:
        """Whether several senders speak in the turn's conversation (a group's, shared)."""
        return not turn.is_private and self.settings.scope == "chat"

    def _oldest_kept(self) -> float:
        days = self.settings.max_age_days
        return time.time() - days * 86400 if days else 0.0

    async def load(self, turn: Turn, *, limit: int | None = None) -> list[ChatMessage]:
        """The conversation (its newest `limit` messages), oldest first, within the retention
        limits; [] once it went idle."""
        key = self.conversation(turn)
        await self._fold(key, turn.update_id)
        if self.settings.idle_minutes:
            recent = time.time() - self.settings.idle_minutes * 60
            if not await self.store.list_read(LISTS, key, limit=1, since=recent):
                await self.store.list_set(LISTS, key, [])
                return []
        kept = self.settings.max_messages
        past = await self.store.list_read(
            LISTS, key, limit=kept if limit is None else min(limit, kept), since=self._oldest_kept()
        )
        return [_unmarked(message) for message in past]

    async def append(self, turn: Turn, *messages: ChatMessage) -> None:
        """Add messages (a user's marked with its sender, in a shared conversation): durable
        once this returns. They replace the turn's draft (the answer being shown is now stored
        whole, or the part before a tool call is)."""
        key = self.conversation(turn)
        sender = turn.sender_id if self.shared(turn) else None
        marked = [
            {**m, SENDER: sender} if m.get("role") == "user" and sender is not None else m
            for m in messages
        ]
        await self.store.list_push(LISTS, key, marked, keep=self.settings.max_messages)
        if self._drafting.get(key) == turn.update_id:
            del self._drafting[key]
            await self.store.put(DRAFTS, key, None)
        if self.settings.max_age_days and time.time() - self._last_expire > EXPIRE_EVERY:
            await self.expire()

    async def draft(self, turn: Turn, content: str | None) -> None:
        """The turn's answer as far as the user has seen it, kept beside the conversation until
        `append` stores it: after a kill -9 the next `load` adds it, marked as interrupted.
        None drops it (/cancel: the user chose to stop it)."""
        key = self.conversation(turn)
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

    async def clear(self, turn: Turn) -> None:
        """Forget the conversation."""
        key = self.conversation(turn)
        await self.store.list_set(LISTS, key, [])
        self._drafting.pop(key, None)
        await self.store.put(DRAFTS, key, None)

    async def rewind(self, turn: Turn) -> ChatMessage | None:
        """Drop the last user message and what followed it; return that message. In a shared
        conversation, a UserError (and nothing dropped) if someone else sent it."""
        key = self.conversation(turn)
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
        return _unmarked(past[last])

    async def move_chat(self, old: int, new: int) -> None:
        """A group became supergroup `new`: its conversations go on there (the answer still
        being written in the old one is stored there too)."""
        self._moved[old] = new
        await self.store.list_rename(LISTS, f"chat:{old}", f"chat:{new}")

    async def expire(self) -> None:
        """Delete what retention no longer keeps (hourly, and at start-up)."""
        self._last_expire = time.time()
        if self.settings.max_age_days:
            await self.store.list_expire(LISTS, self._oldest_kept())


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
        },
        "ru": {
            "history.clear": "Забыть наш разговор",
            "history.cleared": "Готово: я забыл наш разговор.",
            "history.not_yours": "Последний вопрос здесь задал кто-то другой: повторить его "
            "(/retry) может только он. Отправьте свой вопрос заново.",
        },
    }


@hookimpl
def register_commands(app: App) -> Sequence[Command]:
    return [Command("clear", clear, help=app.translations("history.clear"))]


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
