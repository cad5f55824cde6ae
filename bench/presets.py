"""The benchmark as data: the presets (load and fake model timings) and the rows of the table.

Every preset pushes its messages to the fake Telegram in one burst (before the bot is spawned in
"cold", once it polls in the others), and gives botcore the default bot.toml (chat streams:
``plugins.chat.stream = true``). The baseline asks for a plain completion, except in ``stream``
and ``telegram-limits`` where it runs with ``--stream``.

Only ``telegram-limits`` has Telegram's flood limits on: the fake enforces them, botcore keeps its
``[bot.limits]`` (the default) and the baseline paces itself with PTB's ``AIORateLimiter``; its
drain is compared with :func:`physical_limit`, the best that Telegram's limits allow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from botcore.split import split_message
from botcore.testing.flood import TELEGRAM_LIMITS

BOT_USERNAME = "botcore_test_bot"
"""The fake's bot: group questions mention it (botcore answers addressed messages in groups)."""
TEXT_LIMIT = 4096

SHORT_ANSWER = "Sure. Here is a short answer to your question, written by the fake model."
LONG_ANSWER = " ".join(
    f"Sentence {i} of a long streamed answer, arriving a few words at a time." for i in range(12)
)


@dataclass(frozen=True)
class Preset:
    """One load shape: who writes how much at once, and how the fake model answers."""

    name: str
    users: int
    messages: int
    """Updates pushed in the burst, spread evenly over the users (one private chat each)."""
    answer: str
    """The model's fixed answer; a chat has answered a message when a bot message shows it."""
    openai_args: tuple[str, ...] = ()
    """Flags for ``python -m botcore.testing.fake_openai``."""
    baseline_args: tuple[str, ...] = ()
    """Flags for ``bench/baseline_ptb.py``."""
    timeout: float = 120.0
    """Seconds to wait for every answer before the run is recorded as incomplete."""
    mode: Literal["polling", "webhook"] = "polling"
    """How botcore takes updates; in webhook mode the fake Telegram POSTs them to the bot."""
    bots: tuple[str, ...] = ("baseline", "botcore")
    """The bots measured (the baseline has no webhook server of its own)."""
    start: Literal["warm", "cold", "steady"] = "warm"
    """When the messages arrive: "warm" after one warm-up answer; "cold" already waiting when the
    bot is spawned (times from the spawn); "steady" once the bot has idled ``idle`` seconds
    without any message before (first-use costs included)."""
    idle: float = 2.0
    """Seconds a "steady" bot idles after its first getUpdates before the burst."""
    groups: int = 0
    """Group chats in the burst besides the private ones, one question each, mentioning the bot."""
    limits: bool = False
    """Telegram's flood limits: enforced by the fake, kept by botcore's scheduler ([bot.limits]
    on) and by the baseline's AIORateLimiter; off, botcore runs with ``enabled = false``."""

    @property
    def expected(self) -> int:
        """Answers the burst asks for: the private messages and one per group."""
        return self.messages + self.groups

    def openai_option(self, flag: str) -> float:
        """A timing the fake model is given (``--stream-first``, ...); 0 when not given."""
        args = self.openai_args
        return float(args[args.index(flag) + 1]) if flag in args else 0.0

    @property
    def first_token(self) -> float:
        """Seconds from the model's request to its first text (its latency if it does not
        stream)."""
        return self.openai_option("--stream-first") or self.openai_option("--latency")

    @property
    def last_token(self) -> float:
        """Seconds from the model's request to the end of its answer."""
        return self.openai_option("--stream-total") or self.openai_option("--latency")


def physical_limit(preset: Preset) -> float:
    """The earliest the burst's last final answer can arrive under Telegram's limits (as the
    fake enforces them, ``TELEGRAM_LIMITS``), in seconds from the burst.

    No answer is final before the model's last token, so every one of its messages (the answer
    cut at 4096 characters) goes after ``last_token``; the global budget then holds at most one
    second's worth (its burst) and refills at ``global_per_second``; one chat's messages beyond
    its burst go at ``per_chat`` a second. Drafts and typing are not counted by Telegram, and
    previews are not needed at all, so they cost nothing here. Network and CPU time are taken
    as zero: no bot can reach this figure, a good one comes close.
    """
    limits = TELEGRAM_LIMITS
    assert limits.global_per_second is not None and limits.per_chat is not None
    pieces = len(split_message(preset.answer, [], TEXT_LIMIT))
    finals = preset.expected * pieces
    burst = max(1.0, limits.global_per_second)
    overall = max(0.0, finals - burst) / limits.global_per_second
    per_chat = math.ceil(preset.messages / preset.users) * pieces  # the busiest private chat
    chat = max(0.0, per_chat - limits.per_chat_burst) / limits.per_chat
    return preset.last_token + max(overall, chat)


PRESETS: tuple[Preset, ...] = (
    Preset("cold", users=50, messages=50, answer=SHORT_ANSWER, start="cold", timeout=60),
    Preset("steady", users=50, messages=50, answer=SHORT_ANSWER, start="steady", timeout=60),
    Preset("overhead", users=50, messages=2000, answer=SHORT_ANSWER),
    Preset(
        "webhook", users=50, messages=2000, answer=SHORT_ANSWER, mode="webhook", bots=("botcore",)
    ),
    Preset(
        "latency", users=200, messages=200, answer=SHORT_ANSWER, openai_args=("--latency", "1.0")
    ),
    Preset(
        "stream",
        users=50,
        messages=50,
        answer=LONG_ANSWER,
        openai_args=("--stream-first", "0.3", "--stream-total", "3.0"),
        baseline_args=("--stream",),
    ),
    Preset(
        "telegram-limits",
        users=200,
        messages=200,
        groups=10,
        answer=LONG_ANSWER,
        openai_args=("--stream-first", "0.3", "--stream-total", "3.0"),
        baseline_args=("--stream", "--rate-limiter"),
        limits=True,
        timeout=180,
    ),
)

QUICK: tuple[Preset, ...] = (
    Preset("cold", users=20, messages=20, answer=SHORT_ANSWER, start="cold", timeout=30),
    Preset(
        "steady", users=20, messages=20, answer=SHORT_ANSWER, start="steady", idle=1.0, timeout=30
    ),
    Preset("overhead", users=10, messages=50, answer=SHORT_ANSWER, timeout=30),
    Preset(
        "webhook",
        users=10,
        messages=50,
        answer=SHORT_ANSWER,
        mode="webhook",
        bots=("botcore",),
        timeout=30,
    ),
    Preset(
        "latency",
        users=10,
        messages=10,
        answer=SHORT_ANSWER,
        openai_args=("--latency", "0.2"),
        timeout=30,
    ),
    Preset(
        "stream",
        users=10,
        messages=10,
        answer=LONG_ANSWER,
        openai_args=("--stream-first", "0.1", "--stream-total", "0.6"),
        baseline_args=("--stream",),
        timeout=30,
    ),
    Preset(
        "telegram-limits",
        users=40,  # more finals than the global burst of 30: the global budget still binds
        messages=40,
        groups=2,
        answer=LONG_ANSWER,
        openai_args=("--stream-first", "0.1", "--stream-total", "0.6"),
        baseline_args=("--stream", "--rate-limiter"),
        limits=True,
        timeout=60,
    ),
)


@dataclass(frozen=True)
class Row:
    """A row of the table: a metric of one preset's runs (median), and the issue's target."""

    preset: str  # "" for rows over all presets
    metric: str
    label: str
    better: Literal["higher", "lower"]
    target: str = ""
    """"≥ 3x" / "≤ 0.4x" compare the ratio botcore/baseline; "≤ 1.3" compares botcore's figure."""
    versus: str = ""
    """Compare with botcore's own figure in this preset instead of the baseline's (webhook
    against polling)."""

    @property
    def key(self) -> str:
        """The row's name in the JSON results, e.g. "overhead.updates_per_s"."""
        return f"{self.preset}.{self.metric}" if self.preset else self.metric


ROWS: tuple[Row, ...] = (
    Row("cold", "first_answer_s", "cold: spawn → first answer, s", "lower", "≤ 0.8x"),
    Row("cold", "startup_s", "cold: spawn → first getUpdates, s", "lower"),
    Row("cold", "last_answer_s", "cold: spawn → all answered, s", "lower"),
    Row("steady", "first_answer_s", "steady: burst → first answer, s", "lower"),
    Row("steady", "last_answer_s", "steady: burst → all answered, s", "lower"),
    Row("overhead", "updates_per_s", "overhead: updates/s", "higher", "≥ 3x"),
    Row("overhead", "cpu_ms_per_message", "overhead: CPU ms/update", "lower", "≤ 0.4x"),
    Row("latency", "last_answer_s", "latency: last answer, s", "lower", "≤ 1.3"),
    Row("latency", "answer_p50_s", "latency: answer p50, s", "lower"),
    Row("latency", "answer_p99_s", "latency: answer p99, s", "lower", "≤ 0.85x"),
    Row("stream", "first_text_p50_s", "stream: first text p50, s", "lower", "≤ 0.45"),
    Row("stream", "first_text_p99_s", "stream: first text p99, s", "lower", "≤ 0.6"),
    Row("stream", "edits_per_answer", "stream: edits/answer", "lower", "≤ 8"),
    Row("stream", "drafts_per_answer", "stream: drafts/answer", "lower", "≤ 8"),
    Row("stream", "cpu_ms_per_message", "stream: CPU ms/answer", "lower", "≤ 0.5x"),
    Row(
        "webhook",
        "last_answer_s",
        "webhook: drain s (baseline = polling)",
        "lower",
        "≤ 1.1x",
        versus="overhead",
    ),
    Row(
        "webhook",
        "cpu_ms_per_message",
        "webhook: CPU ms/update (baseline = polling)",
        "lower",
        versus="overhead",
    ),
    Row(
        "telegram-limits", "complete_pct", "telegram-limits: answers complete, %", "higher", "≥ 100"
    ),
    Row("telegram-limits", "violations", "telegram-limits: flood violations", "lower", "≤ 0"),
    Row("telegram-limits", "rejections", "telegram-limits: 429s received", "lower"),
    Row("telegram-limits", "last_answer_s", "telegram-limits: drain, s", "lower"),
    Row("telegram-limits", "physical_s", "telegram-limits: physical limit, s", "lower"),
    Row(
        "telegram-limits",
        "drain_over_physical",
        "telegram-limits: drain ÷ physical limit",
        "lower",
        "≤ 1.15",
    ),
    Row("telegram-limits", "first_text_p50_s", "telegram-limits: first text p50, s", "lower"),
    Row("telegram-limits", "first_text_p99_s", "telegram-limits: first text p99, s", "lower"),
    Row(
        "telegram-limits",
        "model_request_p50_s",
        "telegram-limits: burst → model request p50, s",
        "lower",
    ),
    Row(
        "telegram-limits",
        "first_text_after_token_p50_s",
        "telegram-limits: first text after first token p50, s",
        "lower",
        "≤ 0.1",
    ),
    Row(
        "telegram-limits",
        "first_text_after_token_p99_s",
        "telegram-limits: first text after first token p99, s",
        "lower",
    ),
    Row("", "peak_rss_mb", "peak RSS, MB (worst preset)", "lower", "≤ 100"),
    Row("", "startup_s", "start-up, s (spawn → getUpdates)", "lower", "≤ 1"),
)
