"""The conversation store interface: one plugin provides it (history), others use it (chat)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

if TYPE_CHECKING:
    from botcore.turn import Turn

ChatMessage: TypeAlias = dict[str, Any]
"""One message in OpenAI's chat format: {"role": "user" | "assistant" | "tool", "content": ...}."""


class HistoryStore(Protocol):
    """Where a conversation's messages live. The store decides what "conversation" means for a turn
    (per user in private chats, per chat or per user in groups), so its users never compute keys."""

    async def load(self, turn: Turn) -> list[ChatMessage]:
        """The conversation's messages, oldest first."""
        ...

    async def append(self, turn: Turn, *messages: ChatMessage) -> None:
        """Add messages at the end; durable when this returns."""
        ...

    async def clear(self, turn: Turn) -> None:
        """Forget the conversation."""
        ...
