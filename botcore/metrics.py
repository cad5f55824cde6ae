"""What the bot tells its operator over HTTP: Prometheus metrics and a health check.

`app.metrics` is always there; with `[bot.metrics] enabled = false` (the default) every call is a
no-op, so plugins count things without asking whether anyone listens.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from botcore.config import BotSettings, StartupError

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

PREFIX = "botcore_"
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "updates": ("Messages handled, by kind and outcome", ("kind", "outcome")),
    "plugin_errors": ("Plugin calls that raised, by plugin", ("plugin",)),
    "usage": ("Metered use reported with turn.meter(), by item", ("item",)),
    "model_errors": (
        "Model API failures explained to the user, by plugin and reason",
        ("plugin", "reason"),
    ),
}
"""Declared at start (so they read 0 before the first event); others appear on first count()."""
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {
    "turn_seconds": (
        "Time from taking a message to the end of its answer",
        ("kind",),
        (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    ),
    "llm_seconds": (
        "Time of model calls (a streamed answer: until its last chunk), by plugin and model",
        ("plugin", "model"),
        (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
    ),
}
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The metrics API plugins use; this base class records nothing (metrics disabled)."""

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


class PrometheusMetrics(Metrics):
    """Metrics in a registry of their own (one per App, so several bots share a process)."""

    enabled = True

    def __init__(self, health: Health | None = None) -> None:
        from prometheus_client import CollectorRegistry, Gauge

        self.registry: CollectorRegistry = CollectorRegistry()
        self._counters: dict[str, Any] = {}
        self._histograms: dict[str, Any] = {}
        self._children: dict[tuple[Any, ...], Any] = {}
        """Labelled series by (type, name, labels): labels() validates on every call, this not."""
        self._warned: set[str] = set()
        for name, (doc, labels) in COUNTERS.items():
            self._declare_counter(name, doc, labels)
        for name, (doc, labels, buckets) in HISTOGRAMS.items():
            self._declare_histogram(name, doc, labels, buckets)
        if health is not None:
            Gauge(
                PREFIX + "telegram_ok_age_seconds",
                "Seconds since the last successful Bot API response (-1: none yet)",
                registry=self.registry,
            ).set_function(lambda: _or_minus_one(health.telegram_ok_age()))
            Gauge(
                PREFIX + "last_update_age_seconds",
                "Seconds since the last message was handled (-1: none yet)",
                registry=self.registry,
            ).set_function(lambda: _or_minus_one(health.last_update_age()))

    def _declare_counter(self, name: str, doc: str, labels: tuple[str, ...]) -> Any:
        from prometheus_client import Counter

        metric = Counter(PREFIX + name, doc, labels, registry=self.registry)
        self._counters[name] = metric
        return metric

    def _declare_histogram(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> Any:
        from prometheus_client import Histogram

        metric = Histogram(PREFIX + name, doc, labels, buckets=buckets, registry=self.registry)
        self._histograms[name] = metric
        return metric

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        key = ("c", name, *labels.items())
        child = self._children.get(key)
        if child is None:
            try:
                metric = self._counters.get(name)
                if metric is None:
                    metric = self._declare_counter(name, name.replace("_", " "), tuple(labels))
                child = self._children[key] = metric.labels(**labels) if labels else metric
            except ValueError as exc:  # a taken or bad name, other label names: the turn goes on
                self._warn(name, exc)
                return
        child.inc(amount)

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = ("h", name, *labels.items())
        child = self._children.get(key)
        if child is None:
            try:
                metric = self._histograms.get(name)
                if metric is None:
                    doc = name.replace("_", " ")
                    metric = self._declare_histogram(name, doc, tuple(labels), DEFAULT_BUCKETS)
                child = self._children[key] = metric.labels(**labels) if labels else metric
            except ValueError as exc:
                self._warn(name, exc)
                return
        child.observe(value)

    def _warn(self, name: str, exc: ValueError) -> None:
        if name not in self._warned:
            self._warned.add(name)
            log.warning("metric %s not recorded: %s", name, exc)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def _or_minus_one(value: float | None) -> float:
    return -1.0 if value is None else value


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

    async def handle(self, request: web.BaseRequest) -> web.Response:
        """GET /healthz on an aiohttp server (the metrics server's)."""
        from aiohttp import web

        status, body, content_type = self.answer("verbose" in request.query)
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class MetricsServer:
    """The HTTP server of [bot.metrics]: GET /metrics (Prometheus) and GET /healthz."""

    def __init__(self, metrics: Metrics, health: Health, listen: str, port: int) -> None:
        self.metrics = metrics
        self.health = health
        self.listen = listen
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; a busy port stops start-up naming the setting."""
        from aiohttp import web  # here: a bot without [bot.metrics] never loads the server side

        server = web.Application()
        server.router.add_get("/metrics", self._on_metrics)
        server.router.add_get("/healthz", self.health.handle)
        self._runner = web.AppRunner(server, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.listen, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise StartupError(
                f"bot.metrics: cannot listen on {self.listen}:{self.port}: {exc.strerror}"
            ) from None
        sockets = self._runner.addresses
        if sockets:
            self.port = int(sockets[0][1])
        log.info("metrics on http://%s:%s/metrics, health on /healthz", self.listen, self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _on_metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST

        return web.Response(
            body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
