"""A plugin that uses the lifecycle hooks, has localized texts and keeps history in memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from botcore import App, ChatMessage, Command, StrictModel, Turn, hookimpl

EVENTS: list[str] = []
"""What the lifecycle hooks saw, in order (tests clear it)."""


class Settings(StrictModel):
    fail_startup: bool = False


class MemoryStore:
    """A HistoryStore in a dict: one conversation per chat."""

    def __init__(self) -> None:
        self.chats: dict[int, list[ChatMessage]] = {}
        self.summaries: dict[int, str] = {}

    async def conversation(self, turn: Turn) -> str:
        return str(turn.chat_id)

    async def draft(self, turn: Turn, content: str | None) -> None:
        """Answers are stored once complete: a kill -9 mid-answer loses it (it is a sample)."""

    async def summary(self, turn: Turn) -> str | None:
        return self.summaries.get(turn.chat_id)

    async def compact(self, turn: Turn, summary: str, *, keep: int) -> None:
        self.summaries[turn.chat_id] = summary
        found = self.chats.get(turn.chat_id, [])
        self.chats[turn.chat_id] = found[len(found) - keep :] if keep else []

    async def rewind(self, turn: Turn) -> ChatMessage | None:
        found = self.chats.get(turn.chat_id, [])
        last = max((i for i, m in enumerate(found) if m.get("role") == "user"), default=None)
        if last is None:
            return None
        message = found[last]
        del found[last:]
        return message

    async def load(self, turn: Turn, *, limit: int | None = None) -> list[ChatMessage]:
        found = self.chats.get(turn.chat_id, [])
        return list(found if limit is None else found[len(found) - limit :] if limit else [])

    async def append(self, turn: Turn, *messages: ChatMessage) -> None:
        self.chats.setdefault(turn.chat_id, []).extend(messages)

    async def clear(self, turn: Turn) -> None:
        self.chats.pop(turn.chat_id, None)
        self.summaries.pop(turn.chat_id, None)


STORES: dict[App, MemoryStore] = {}


@hookimpl
def settings_model() -> type[Settings]:
    return Settings


@hookimpl
def register_texts() -> Mapping[str, Mapping[str, str]]:
    return {
        "en": {
            "notebook.help": "Count the notes",
            "notebook.count": "{count} notes so far",
            "notebook.only_english": "English only",
        },
        "ru": {"notebook.help": "Сосчитать заметки", "notebook.count": "Заметок: {count}"},
    }


@hookimpl
def register_commands(app: App) -> Sequence[Command]:
    return [Command("notes", notes, help=app.translations("notebook.help"))]


@hookimpl
async def startup(app: App) -> None:
    if app.settings(Settings).fail_startup:
        raise RuntimeError("the notebook is locked")
    STORES[app] = MemoryStore()
    EVENTS.append("startup")


@hookimpl
async def shutdown(app: App) -> None:
    EVENTS.append(f"shutdown with {len(STORES.pop(app).chats)} chats")


@hookimpl
def history_store(app: App) -> MemoryStore:
    return STORES[app]


async def notes(turn: Turn) -> str:
    EVENTS.append("notes")
    count = len(await STORES[turn.app].load(turn))
    return turn.t("notebook.count", count=count) + " · " + turn.t("notebook.only_english")
