"""The benchmark as data: the presets (load and fake model timings) and the rows of the table.

Every preset pushes its messages to the fake Telegram in one burst (before the bot is spawned in
"cold", once it polls in the others), and gives botcore the default bot.toml (chat streams:
``plugins.chat.stream = true``). The baseline asks for a plain completion, except in ``stream``
where it runs with ``--stream``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    Row("", "peak_rss_mb", "peak RSS, MB (worst preset)", "lower", "≤ 100"),
    Row("", "startup_s", "start-up, s (spawn → getUpdates)", "lower", "≤ 1"),
)
