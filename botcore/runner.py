"""Build the python-telegram-bot Application around the Runtime and run it: polling or webhook."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import importlib
import json
import logging
import re
import signal
import ssl
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from telegram import Update
from telegram.error import InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import Application, ApplicationBuilder, ApplicationHandlerStop, TypeHandler
from telegram.request import BaseRequest

from botcore.config import StartupError
from botcore.intake import PollingBot, Seen
from botcore.journal import LEASE, JournalQueue
from botcore.logs import redact
from botcore.menu import publish_menu
from botcore.runtime import Runtime
from botcore.scheduler import Limits, Scheduler
from botcore.transport import AiohttpRequest, CheckedHTTPXRequest, NotBotApi
from botcore.webhook import WebhookServer

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "pre_checkout_query"]


def settle_heap() -> None:
    """Move what start-up built (modules, pydantic models, plugins) out of the collector's sight
    and collect less often: full collections walked that whole heap, ~10% of the CPU a burst of
    updates cost (bench/). No collection first: it would hold the loop for ~50 ms."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


GC_THRESHOLD = 7000
"""Allocations between young-generation collections (CPython's default: 700)."""
MAX_RETRY_DELAY = 60.0
"""The longest wait between two tries to reach Telegram at start-up."""
SDK_IDLE_WAIT = 1.0
"""Seconds after start-up before the OpenAI SDK is imported (then once no turn runs)."""


class TokenRejected(StartupError):
    """Telegram refused the bot token: `botcore run` exits 3, without retrying."""

    exit_code = 3


class TelegramUnreachable(StartupError):
    """The network stayed down for bot.startup_timeout seconds: `botcore run` exits 4."""

    exit_code = 4


class Runner:
    """Starts and stops one bot: the Application, the plugins, polling or the webhook server."""

    def __init__(self, app: Runtime) -> None:
        self.app = app
        settings = app.config.bot
        api: BaseRequest
        polls: BaseRequest
        if settings.http_client == "aiohttp":
            api = aiohttp_api = AiohttpRequest(connection_limit=settings.concurrency)
            polls = aiohttp_polls = AiohttpRequest(connection_limit=1)
            app.health.telegram_ok = lambda: aiohttp_api.last_ok
            app.health.poll_ok = lambda: aiohttp_polls.last_ok
        else:  # python-telegram-bot's defaults (256 and 1 connections)
            api = CheckedHTTPXRequest(connection_pool_size=256)
            polls = CheckedHTTPXRequest(connection_pool_size=1)
        # Our own ExtBot: it reads updates one by one and reports a token revoked mid-run.
        bot = PollingBot(
            settings.token.get_secret_value(),
            base_url=settings.base_url or "https://api.telegram.org/bot",
            base_file_url=settings.base_file_url or "https://api.telegram.org/file/bot",
            request=api,
            get_updates_request=polls,
            local_mode=settings.local_mode,
            # Every send and edit, the plugins' own too, goes through one scheduler (flood limits).
            rate_limiter=Scheduler(Limits(**settings.limits.model_dump())),
            on_rejected=self._token_rejected,
        )
        builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any] = ApplicationBuilder().bot(bot)
        if settings.mode == "webhook":
            builder = builder.updater(None)
        # Every update is journaled as it is queued, before Telegram is told it arrived.
        self.journal = app.pipeline.journal
        self.queue = JournalQueue(self.journal)
        builder = builder.update_queue(self.queue)
        self.application: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        # Non-blocking: every update becomes a task at once; the pipeline orders them per chat
        # and bounds how many run (bot.concurrency), and Application.stop() awaits them all.
        self.application.add_handler(TypeHandler(Update, app.pipeline.handle, block=False))
        # First, and awaited: an update_id seen before (a redelivery) goes no further.
        self.seen = Seen(app.store, lambda: app.bot_id)
        self.application.add_handler(TypeHandler(Update, self._once), group=-1)
        self.application.add_error_handler(self._on_error)
        self._webhook: WebhookServer | None = None
        self._secret = ""
        self._stop = asyncio.Event()
        self._sdk: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._fatal: StartupError | None = None

    async def _once(self, update: Update, _context: object) -> None:
        """Stop a repeat of an update here, before any handler. One taken over from the journal
        was claimed by the run a kill cut off: it is the journal's to hand out (once, under its
        lease), not a repeat."""
        if update.update_id in self.queue.replayed:
            return
        if not await self.seen.first(update.update_id):
            log.info("update %s came again; handled once", update.update_id)
            raise ApplicationHandlerStop

    def _token_rejected(self, exc: InvalidToken) -> None:
        """Telegram refused the token after start-up (revoked with @BotFather): stop, and have
        `botcore run` exit 3 with one line, as at start-up; restarting would not mend it."""
        self._fatal = TokenRejected(
            "bot.token: Telegram no longer accepts the token (revoked or changed with "
            "@BotFather?); stopped"
        )
        self._stop.set()

    async def _on_error(self, update: object, context: Any) -> None:
        log.error("unhandled error in update processing", exc_info=context.error)

    async def start(self) -> None:
        """Connect to Telegram, start the plugins and make ready what an answer needs, then
        begin taking updates: an update waiting at start-up is answered at once."""
        application = self.application
        await self.app.load()  # a bad setting stops start-up before the network is tried
        if not await self._connect():
            return  # stopped (SIGTERM) while waiting for the network
        bot = application.bot
        self.app.telegram = bot
        self.app.bot_id = bot.id
        self.app.bot_username = bot.username
        await self.app.startup()
        settings = self.app.config.bot
        if self.app.uses_openai and settings.http_client == "httpx":  # answers go through the SDK
            await asyncio.to_thread(importlib.import_module, "openai")
        settle_heap()
        await application.start()
        await self.journal.open()
        await self._take_over()  # queued before polling's first batch: they came first
        if self.app.store.shared:  # another instance may die while this one runs
            self._sweeper = asyncio.create_task(self._sweep())
        menu = asyncio.ensure_future(self.register_commands())  # its round trips overlap polling's
        try:
            if settings.mode == "webhook":
                await self._start_webhook()
            else:
                assert application.updater is not None
                await application.updater.start_polling(
                    poll_interval=0.0,
                    timeout=settings.poll_timeout,
                    allowed_updates=ALLOWED_UPDATES,
                    error_callback=self._on_polling_error,
                )
        finally:
            await menu
        if self.app.uses_openai and "openai" not in sys.modules:
            self._sdk = asyncio.create_task(self._load_sdk())
        log.info(
            "@%s is up (%s) with plugins: %s",
            bot.username,
            settings.mode,
            ", ".join(self.app.plugins.names),
        )

    async def _take_over(self) -> None:
        """Handle the updates that a killed process (this bot's last run, or a dead instance on
        a shared store) had confirmed but not finished: one whose turn never began is queued as
        if it had just arrived; the user of one cut off mid-turn is told (pipeline)."""
        entries = await self.journal.take_over()
        for entry in entries:
            try:
                update = Update.de_json(entry.update, self.app.telegram)
            except Exception as exc:
                log.warning("journal: update %s cannot be read: %r", entry.update_id, exc)
                update = None
            if update is None:
                await self.journal.done(entry.update_id)
                continue
            if entry.started:
                self.app.pipeline.interrupted.add(entry.update_id)
            self.queue.put_nowait(update)  # journaled already: straight into the queue
            self.queue.replayed.add(entry.update_id)
            if self.app.config.bot.mode == "polling":
                self.queue.through = max(self.queue.through, entry.update_id)
        if entries:
            cut = sum(entry.started for entry in entries)
            log.info(
                "journal: %d unfinished updates from a stopped run: %d handled now, "
                "%d users told their answer was cut off",
                len(entries),
                len(entries) - cut,
                cut,
            )

    async def _sweep(self) -> None:
        """On a shared store: now and then take over what an instance that died left."""
        while True:
            await asyncio.sleep(LEASE / 2)
            try:
                await self._take_over()
            except Exception:
                log.exception("journal: taking over unfinished updates failed")

    async def _connect(self) -> bool:
        """Ask Telegram who the bot is (getMe); while the network is down, try again after 1, 2,
        4... 60 s, for bot.startup_timeout seconds (0: for ever). False if stopped meanwhile.
        A server that is not a Bot API, or a rejected token, stops start-up at once."""
        settings = self.app.config.bot
        where = settings.base_url or "https://api.telegram.org/bot"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.startup_timeout if settings.startup_timeout else None
        delay = 1.0
        while True:
            try:
                await self.application.initialize()
                return True
            except NotBotApi as exc:
                raise StartupError(
                    f"bot.base_url: {where} does not answer like a Telegram Bot API server "
                    f"(HTTP {exc.status})"
                ) from None
            except InvalidToken:
                raise TokenRejected(
                    "bot.token: Telegram rejected the token (check it with @BotFather)"
                ) from None
            except (NetworkError, RetryAfter) as exc:  # TimedOut is a NetworkError
                reason = redact(str(exc), self.app.config.secrets())
            except TelegramError as exc:
                reason = redact(str(exc), self.app.config.secrets())
                raise StartupError(f"cannot reach the Telegram Bot API: {reason}") from None
            wait = delay if deadline is None else min(delay, deadline - loop.time())
            if wait <= 0:
                raise TelegramUnreachable(
                    f"cannot reach the Telegram Bot API at {where} for "
                    f"{settings.startup_timeout:g} s, giving up: {reason}"
                )
            log.warning(
                "cannot reach the Telegram Bot API (%s); trying again in %.2g s", reason, wait
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)
                return False
            delay = min(delay * 2, MAX_RETRY_DELAY)

    async def _load_sdk(self) -> None:
        """Import the OpenAI SDK (images, voice and API errors use it; a text answer does not)
        on a thread once the bot is idle, so that the updates waiting at start-up go first."""
        await asyncio.sleep(SDK_IDLE_WAIT)
        await self.app.pipeline.wait_idle()
        await asyncio.to_thread(importlib.import_module, "openai")
        gc.freeze()  # the SDK's modules too, like the rest of start-up (settle_heap)

    def _on_polling_error(self, exc: TelegramError) -> None:
        reason = redact(str(exc), self.app.config.secrets())
        self.app.health.poll_failed(reason)
        log.warning("getUpdates failed, retrying: %s", reason)

    async def register_commands(self) -> None:
        """Fill Telegram's command menu (botcore.menu; set again when a plugin is switched)."""
        await publish_menu(self.app)

    async def _start_webhook(self) -> None:
        settings = self.app.config.bot.webhook
        assert settings.url is not None  # the config requires it in webhook mode
        given = settings.secret_token
        # Unset, it is derived from the bot token: every instance behind one URL agrees on it.
        token = self.app.config.bot.token.get_secret_value().encode()
        derived = hmac.new(token, b"botcore webhook secret", hashlib.sha256).hexdigest()
        self._secret = given.get_secret_value() if given else derived
        tls = tls_context(settings.cert, settings.key) if settings.cert else None
        self._webhook = WebhookServer(
            settings.path, self._secret, self._on_update, self.app.health.answer
        )
        try:
            await self._webhook.start(settings.listen, settings.port, tls)
        except OSError as exc:
            self._webhook = None
            raise StartupError(
                f"bot.webhook: cannot listen on {settings.listen}:{settings.port}: {exc.strerror}"
            ) from None
        certificate = None
        if settings.upload_cert and settings.cert:
            certificate = certificates_only(settings.cert.read_bytes())
        await self.app.telegram.set_webhook(
            settings.url,
            secret_token=self._secret,
            allowed_updates=ALLOWED_UPDATES,
            certificate=certificate,
        )

    def _on_update(self, body: bytes) -> Awaitable[None]:
        """One update POSTed by Telegram (raises at once if it is none); the server answers 200
        once the returned awaitable has journaled and queued it."""
        update = Update.de_json(json.loads(body), self.app.telegram)
        return self.queue.put(update)

    async def stop(self) -> None:
        """Stop taking updates, finish the ones in flight, shut the plugins down."""
        application = self.application
        if self._sdk is not None:
            self._sdk.cancel()
            self._sdk = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._webhook is not None:
            await self._webhook.stop()
            self._webhook = None
        if application.updater is not None and application.updater.running:
            await application.updater.stop()
        if isinstance(application.bot.rate_limiter, Scheduler):
            application.bot.rate_limiter.stop_waiting()  # a flood ban must not hold the stop
        self.app.gate.stop_waiting()  # a turn waiting for a tool's approval must not hold the stop
        if application.running:
            await application.stop()
        await self.journal.close()  # every update taken was handled (or stays for the next run)
        await self.app.shutdown()
        with contextlib.suppress(TelegramError):
            await application.shutdown()
            await application.bot.shutdown()  # after a failed start: the HTTP sessions it opened

    async def run(self) -> None:
        """Run until SIGINT or SIGTERM."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self._stop.set)
        try:
            await self.start()
            await self._stop.wait()
        finally:
            log.info("shutting down")
            await self.stop()
        if self._fatal is not None:
            raise self._fatal


def tls_context(cert: Path, key: Path | None) -> ssl.SSLContext:
    """The server side of HTTPS for the webhook; a StartupError naming the setting if the files
    cannot be read or do not match."""
    for setting, path in (("cert", cert), ("key", key)):
        if path is not None and not path.is_file():
            raise StartupError(f"bot.webhook.{setting}: no such file: {path}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        what = "cert" if key is None else "cert/key"
        reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        raise StartupError(f"bot.webhook.{what}: cannot load {cert}: {reason}") from None
    return context


_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----\r?\n?", re.S
)


def certificates_only(pem: bytes) -> bytes:
    """The certificates of a PEM file, for upload: a file that also holds the private key must
    not send it to Telegram."""
    found = b"".join(_PEM_CERTIFICATE.findall(pem))
    if not found:
        raise StartupError("bot.webhook.cert: no PEM certificate in the file to upload")
    return found
