"""What the bot tells its operator: the metrics API plugins count into, and the health check.

`app.metrics` is always there; without a recorder (the metrics plugin's Prometheus registry,
through the `metrics_recorder` hook) every call is a no-op, so plugins count things without
asking whether anyone listens.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botcore.config import BotSettings


class Metrics:
    """The metrics API plugins use (`app.metrics`); this base class records nothing. A recorder
    (the metrics plugin's) subclasses it and sets `enabled`."""

    enabled = False

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add to the counter `botcore_<name>_total`, e.g. count("budget_rejections", plugin="usage").

        A new name is declared on first use with these label names; use the same ones every time.
        """

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one value (seconds, usually) in the histogram `botcore_<name>`."""

    @contextlib.contextmanager
    def timed(self, name: str, **labels: str) -> Iterator[None]:
        """Observe the seconds the block takes, e.g. around a model call:
        `with app.metrics.timed("llm_seconds", plugin="image", model=model): ...`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(name, time.perf_counter() - start, **labels)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (empty when disabled)."""
        return b""


class Health:
    """Whether the bot is serving, from facts: the last successful Bot API response (getUpdates
    in polling mode) and the last message handled."""

    STALE_GRACE = 60.0
    """Polling: getUpdates answers at least every poll_timeout seconds; this much later is stale."""

    def __init__(self, settings: BotSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.mode = settings.mode
        self.stale_after = settings.poll_timeout + self.STALE_GRACE
        self.clock = clock
        self.started = clock()
        self.updates = 0
        self.last_update: float | None = None
        self.last_poll_error: str | None = None
        self.last_poll_error_at: float | None = None
        self.poll_ok: Callable[[], float | None] | None = None
        """The last successful getUpdates, from the transport (the runner sets it for aiohttp;
        with httpx it stays None and a recent getUpdates error with no update since is unhealthy)."""
        self.telegram_ok: Callable[[], float | None] = lambda: None
        """The last successful Bot API response of any other kind."""

    def saw_update(self) -> None:
        """A message was handled (called once per turn)."""
        self.updates += 1
        self.last_update = self.clock()

    def poll_failed(self, error: str) -> None:
        """getUpdates failed (PTB retries it); `error` must hold no secret."""
        self.last_poll_error = error
        self.last_poll_error_at = self.clock()

    def telegram_ok_age(self) -> float | None:
        """Seconds since Telegram last answered a request successfully."""
        polled = self.poll_ok() if self.poll_ok else None
        times = [t for t in (polled, self.telegram_ok()) if t is not None]
        return self.clock() - max(times) if times else None

    def last_update_age(self) -> float | None:
        """Seconds since the last message was handled."""
        return None if self.last_update is None else self.clock() - self.last_update

    def check(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details). Polling is unhealthy when getUpdates has not succeeded for
        poll_timeout + 60 s; a webhook bot that answers this request is serving."""
        now = self.clock()
        polled = self.poll_ok() if self.poll_ok else None
        reason = None
        if self.mode == "polling" and self.poll_ok is not None:
            since = now - (polled if polled is not None else self.started)
            if since > self.stale_after:
                reason = f"no successful getUpdates for {since:.0f} s"
        elif self.mode == "polling" and self.last_poll_error_at is not None:
            recent = now - self.last_poll_error_at <= self.stale_after
            if recent and (self.last_update or 0) < self.last_poll_error_at:
                reason = "getUpdates is failing"
        if reason and self.last_poll_error:
            reason += f" (last error: {self.last_poll_error})"
        healthy = reason is None
        details: dict[str, Any] = {
            "status": "ok" if healthy else "unhealthy",
            "reason": reason,
            "mode": self.mode,
            "uptime_s": round(now - self.started, 1),
            "updates": self.updates,
            "last_update_age_s": _rounded(self.last_update_age()),
            "telegram_ok_age_s": _rounded(self.telegram_ok_age()),
            "getupdates_ok_age_s": _rounded(None if polled is None else now - polled),
            "last_poll_error": self.last_poll_error,
        }
        return healthy, details

    def answer(self, verbose: bool) -> tuple[int, bytes, str]:
        """GET /healthz as (status, body, content type): 200 "ok" or 503 "unhealthy: <reason>";
        `verbose` answers the details as JSON (same status)."""
        healthy, details = self.check()
        status = 200 if healthy else 503
        if verbose:
            return status, json.dumps(details).encode(), "application/json"
        text = "ok" if healthy else f"unhealthy: {details['reason']}"
        return status, text.encode(), "text/plain; charset=utf-8"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
