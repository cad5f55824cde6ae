"""metrics: Prometheus metrics on GET /metrics and the health check on GET /healthz.

It records what `app.metrics` is told (the core's turns, model calls, plugins' own counts) in a
registry of its own, per bot, served over HTTP on `[plugins.metrics] listen:port`. Without this
plugin every `app.metrics` call is a no-op.
"""

from __future__ import annotations

import functools
import json
import logging
import weakref
from typing import TYPE_CHECKING, Any

from pydantic import Field

import botcore

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

PLUGIN = "metrics"
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
GAUGES = {  # the health check's facts, read at each scrape
    "telegram_ok_age": "Seconds since the last successful Bot API response (-1: none yet)",
    "last_update_age": "Seconds since the last message was handled (-1: none yet)",
}


class Settings(botcore.StrictModel):
    """[plugins.metrics]: where the HTTP server listens."""

    listen: str = "127.0.0.1"
    """0.0.0.0 for a scraper on another host."""
    port: int = Field(9090, ge=0, le=65535)
    """0 picks a free port (logged at start-up)."""


class PrometheusMetrics(botcore.Metrics):
    """Metrics in a registry of their own (one per bot, so several bots share a process);
    `app` (optional) adds the health check's gauges."""

    enabled = True

    def __init__(self, app: botcore.App | None = None) -> None:
        from prometheus_client import CollectorRegistry, Gauge

        self.registry: CollectorRegistry = CollectorRegistry()
        self.server: MetricsServer | None = None
        """The HTTP server serving this registry, once the plugin started it."""
        self._counters: dict[str, Any] = {}
        self._histograms: dict[str, Any] = {}
        self._children: dict[tuple[Any, ...], Any] = {}
        """Labelled series by (type, name, labels): labels() validates on every call, this not."""
        self._warned: set[str] = set()
        for name, (doc, labels) in COUNTERS.items():
            self._declare_counter(name, doc, labels)
        for name, (doc, labels, buckets) in HISTOGRAMS.items():
            self._declare_histogram(name, doc, labels, buckets)
        if app is not None:
            for fact, doc in GAUGES.items():
                gauge = Gauge(f"{PREFIX}{fact}_seconds", doc, registry=self.registry)
                gauge.set_function(functools.partial(_age, app, fact))

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


def _age(app: botcore.App, fact: str) -> float:
    """A health fact in seconds for a gauge, -1 when there is none yet."""
    value = app.health()[1][f"{fact}_s"]
    return -1.0 if value is None else float(value)


class MetricsServer:
    """The HTTP server: GET /metrics (Prometheus) and GET /healthz."""

    def __init__(self, metrics: PrometheusMetrics, app: botcore.App, settings: Settings) -> None:
        self.metrics = metrics
        self.app = app
        self.listen = settings.listen
        self.port = settings.port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; a busy port stops start-up naming the setting."""
        from aiohttp import web

        server = web.Application()
        server.router.add_get("/metrics", self._on_metrics)
        server.router.add_get("/healthz", self._on_health)
        self._runner = web.AppRunner(server, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.listen, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise botcore.StartupError(
                f"plugins.metrics: cannot listen on {self.listen}:{self.port}: {exc.strerror}"
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

    async def _on_health(self, request: web.Request) -> web.Response:
        """200 "ok" or 503 "unhealthy: <reason>"; ?verbose: the facts as JSON (same status)."""
        from aiohttp import web

        healthy, details = self.app.health()
        if "verbose" in request.query:
            body, content_type = json.dumps(details).encode(), "application/json"
        else:
            text = "ok" if healthy else f"unhealthy: {details['reason']}"
            body, content_type = text.encode(), "text/plain; charset=utf-8"
        status = 200 if healthy else 503
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})


_recorders: weakref.WeakKeyDictionary[botcore.App, PrometheusMetrics] = weakref.WeakKeyDictionary()


@botcore.hookimpl
def settings_model() -> type[Settings]:
    return Settings


@botcore.hookimpl
async def startup(app: botcore.App) -> None:
    """Start the server. Not in `botcore check` (no Telegram connection): checking a config on
    the host where the bot runs must not find its own port taken."""
    try:
        metrics = PrometheusMetrics(app)
    except ImportError as exc:
        raise botcore.ConfigError(
            f"plugins.metrics: needs the {exc.name} package, which is not installed: "
            "pip install 'botcore-framework[metrics]'"
        ) from None
    _recorders[app] = metrics
    if app.bot_username is not None:
        metrics.server = MetricsServer(metrics, app, app.settings(Settings))
        await metrics.server.start()


@botcore.hookimpl
async def shutdown(app: botcore.App) -> None:
    metrics = _recorders.pop(app, None)
    if metrics is not None and metrics.server is not None:
        await metrics.server.stop()


@botcore.hookimpl
def metrics_recorder(app: botcore.App) -> botcore.Metrics | None:
    return _recorders.get(app)
