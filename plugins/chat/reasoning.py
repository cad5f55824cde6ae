"""chat reasoning: a reasoning model's thinking, sorted out of its answer and shown or hidden.

OpenAI-compatible endpoints send it beside the text, as `reasoning_content` deltas (DeepSeek,
vLLM) or `reasoning` deltas (OpenRouter), or inline, as a `<think>…</think>` block at the start
of the content (Qwen, DeepSeek-R1 served raw). Either way it becomes `Reasoning` pieces of the
answer's stream, which delivery shows collapsed above the answer; with `reasoning = "hide"`
([plugins.chat], or `/reasoning hide` per user, kept in `app.store`) they are dropped. It is
never the answer: not stored in the history, not read aloud.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from botcore import Reasoning, Turn, UserError

if TYPE_CHECKING:
    from . import Settings

NAMESPACE = "chat.reasoning"
OPEN, CLOSE = "<think>", "</think>"
FIELDS = ("reasoning_content", "reasoning")
"""Delta fields that carry reasoning; vLLM sent both during its rename, so the first one wins."""


class ThinkTags:
    """Splits content into reasoning and answer: a `<think>` block counts only at the start
    (after whitespace), and a tag may arrive cut across chunks."""

    def __init__(self) -> None:
        self.state = "start"  # start -> think -> answer, or start -> answer
        self.pending = ""
        """Text held back: the start so far, or the end of reasoning that may begin `</think>`."""
        self.unclosed = False
        """The content ended inside the block."""

    def feed(self, text: str) -> list[tuple[bool, str]]:
        """(is reasoning, text) segments of `text`, in order."""
        if self.state == "answer":
            return [(False, text)] if text else []
        self.pending += text
        if self.state == "start":
            head = self.pending.lstrip()
            if not head or OPEN.startswith(head):
                return []  # could still be the opening tag
            if not head.startswith(OPEN):
                self.state, answer, self.pending = "answer", self.pending, ""
                return [(False, answer)]
            self.state, self.pending = "think", head[len(OPEN) :]
        end = self.pending.find(CLOSE)
        if end >= 0:
            thought, rest = self.pending[:end], self.pending[end + len(CLOSE) :].lstrip()
            self.state, self.pending = "answer", ""
            return [(seg_type, seg) for seg_type, seg in ((True, thought), (False, rest)) if seg]
        keep = next(
            (n for n in range(len(CLOSE) - 1, 0, -1) if self.pending.endswith(CLOSE[:n])), 0
        )
        thought = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(thought) :]
        return [(True, thought)] if thought else []

    def finish(self) -> list[tuple[bool, str]]:
        """What was held back, once the content ended."""
        pending, self.pending = self.pending, ""
        if self.state == "think":
            self.unclosed = True
            return [(True, pending)] if pending else []
        self.state = "answer"
        return [(False, pending)] if pending.strip() else []


def without_thinking(text: str) -> str:
    """A whole answer's content without its leading `<think>` block (a non-streamed answer)."""
    tags = ThinkTags()
    segments = tags.feed(text) + tags.finish()
    return "".join(piece for thinking, piece in segments if not thinking)


class Pieces:
    """One streamed response's text in order: answer text as `str`, reasoning as `Reasoning`."""

    def __init__(self) -> None:
        self.tags = ThinkTags()
        self.queue: deque[str] = deque()
        self.thought = False
        """Some reasoning came (shown or not)."""
        self.ended = False

    def add(self, delta: Any) -> None:
        """Take a chunk's delta (the SDK's model or a Data: a missing field reads None)."""
        for name in FIELDS:
            value = getattr(delta, name, None)
            if isinstance(value, str) and value:
                self._put(True, value)
                break
        if delta.content:
            for thinking, text in self.tags.feed(str(delta.content)):
                self._put(thinking, text)

    def end(self) -> None:
        """The response ended: release what the tag parser held back."""
        if not self.ended:
            self.ended = True
            for thinking, text in self.tags.finish():
                self._put(thinking, text)

    def pop(self) -> str | None:
        return self.queue.popleft() if self.queue else None

    def _put(self, thinking: bool, text: str) -> None:
        self.thought = self.thought or thinking
        self.queue.append(Reasoning(text) if thinking else text)


async def is_shown(turn: Turn, settings: Settings) -> bool:
    """Whether this user sees reasoning: their /reasoning choice, else bot.toml's. Read once a
    turn, and only when reasoning comes (no store read for models that do not reason)."""
    known = turn.extra.get(NAMESPACE)
    if isinstance(known, bool):
        return known
    choice = await turn.app.store.get(NAMESPACE, str(turn.sender_id))
    show = (choice if choice in ("show", "hide") else settings.reasoning) == "show"
    turn.extra[NAMESPACE] = show
    return show


async def reasoning_command(turn: Turn) -> str:
    """/reasoning show|hide: whether your answers show the model's reasoning; alone, the state."""
    from . import Settings

    settings = turn.app.settings(Settings)
    choice = turn.args.strip().lower()
    if choice in ("show", "hide"):
        stored = None if choice == settings.reasoning else choice  # the default: nothing kept
        await turn.app.store.put(NAMESPACE, str(turn.sender_id), stored)
        turn.extra.pop(NAMESPACE, None)
        return turn.t(f"chat.reasoning_{choice}")
    if choice:
        raise UserError(turn.t("chat.reasoning_usage"))
    state = "show" if await is_shown(turn, settings) else "hide"
    return turn.t(f"chat.reasoning_state_{state}")


TEXTS = {
    "en": {
        "chat.reasoning_help": "Show or hide the model's reasoning: /reasoning show|hide",
        "chat.reasoning_show": "I will show the model's reasoning, collapsed above the answer.",
        "chat.reasoning_hide": "I will hide the model's reasoning and show only the answer.",
        "chat.reasoning_state_show": "The model's reasoning is shown. /reasoning hide hides it.",
        "chat.reasoning_state_hide": "The model's reasoning is hidden. /reasoning show shows it.",
        "chat.reasoning_usage": "Use /reasoning show or /reasoning hide.",
        "chat.only_reasoning": "The model thought but gave no answer (it may have run out of "
        "tokens). Please try again.",
    },
    "ru": {
        "chat.reasoning_help": "Показывать или скрывать рассуждения модели: /reasoning show|hide",
        "chat.reasoning_show": "Буду показывать рассуждения модели, свёрнутыми над ответом.",
        "chat.reasoning_hide": "Буду скрывать рассуждения модели и показывать только ответ.",
        "chat.reasoning_state_show": "Рассуждения модели видны. /reasoning hide скрывает их.",
        "chat.reasoning_state_hide": "Рассуждения модели скрыты. /reasoning show показывает их.",
        "chat.reasoning_usage": "Используйте /reasoning show или /reasoning hide.",
        "chat.only_reasoning": "Модель порассуждала, но не ответила (возможно, ей не хватило "
        "токенов). Попробуйте ещё раз.",
    },
}
