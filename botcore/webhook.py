"""The webhook server: Telegram's POSTs parsed by httptools on a bare asyncio protocol.

An update needs no router, middleware, streaming body or task of its own: its request is read
whole, checked and queued in one synchronous step, and its answer is a prebuilt empty 200. The
aiohttp server spent ~0.13 ms of CPU more per update on its request, response, writer and task
objects, which made a webhook drain 1.2x a polling one (bench/, webhook preset).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import cast

import httptools

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
"""Bytes a request body may have: an update is a few KB; a larger body is refused (413)."""
MAX_HEAD = 64 * 1024
"""Bytes the request line and headers may have (431 past that)."""
IDLE_TIMEOUT = 75.0
"""Seconds a keep-alive connection may sit idle before it is closed."""
REQUEST_TIMEOUT = 30.0
"""Seconds one request may take to arrive whole (a client that trickles it in is cut off)."""
SWEEP_EVERY = 5.0
"""How often idle and slow connections are looked for (one timer, not one per request)."""
TLS_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a client may take over the TLS handshake (with bot.webhook.cert)."""
SECRET_HEADER = b"x-telegram-bot-api-secret-token"

HealthAnswer = tuple[int, bytes, str]
"""(status, body, content type) of a health check."""

_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def response(
    status: int,
    body: bytes = b"",
    content_type: str = "text/plain; charset=utf-8",
    *,
    allow: str | None = None,
    keep_alive: bool = True,
    head: bool = False,
) -> bytes:
    """One whole HTTP/1.1 response; `head` leaves the body out (a HEAD request's answer)."""
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Length: {len(body)}"]
    if body:
        lines.append(f"Content-Type: {content_type}")
    if allow:
        lines.append(f"Allow: {allow}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else body)


_OK = response(200)
_OK_CLOSE = response(200, keep_alive=False)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class WebhookServer:
    """Takes Telegram's POSTs to `path` (and GET /healthz) on one listening socket.

    `on_update` gets each update's body (JSON bytes), synchronously: anything it raises answers
    400, so Telegram retries and then drops that update. It may return an awaitable (keeping the
    update in the journal): the 200 waits for it, so Telegram re-sends what was not kept.
    `health` answers /healthz, verbose (JSON) or not.
    """

    def __init__(
        self,
        path: str,
        secret: str,
        on_update: Callable[[bytes], Awaitable[None] | None],
        health: Callable[[bool], HealthAnswer],
    ) -> None:
        self.path = path.encode()
        self.secret = secret.encode()
        self.on_update = on_update
        self.health = health
        self.connections: set[_Connection] = set()
        self.writing: set[asyncio.Future[None]] = set()
        """Answers waiting for their update to be kept (journaled)."""
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        """Listen on host:port, over TLS with `tls` (OSError if that is not possible)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self),
            host,
            port,
            ssl=tls,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if tls else None,
        )
        self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep)

    async def stop(self) -> None:
        """Stop listening and close every connection (each request was answered when it came)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self.writing:  # each is a store write or two away: Telegram gets its 200
            await asyncio.wait(set(self.writing))
        if self._server is not None:
            self._server.close()
            for connection in list(self.connections):
                connection.close()
            await self._server.wait_closed()
            self._server = None

    def _sweep(self) -> None:
        """Close connections idle past IDLE_TIMEOUT, or in a request begun REQUEST_TIMEOUT ago."""
        now = time.monotonic()
        for connection in list(self.connections):
            if connection.begun is not None:
                if now - connection.begun > REQUEST_TIMEOUT:
                    connection.close()
            elif now - connection.idle_since > IDLE_TIMEOUT:
                connection.close()
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._sweep)

    def answer(
        self, method: bytes, url: bytes, secret: bytes | None, body: bytes, keep_alive: bool
    ) -> bytes | Awaitable[bytes]:
        """The response to one whole request (awaitable when the update is being kept)."""
        path, _, query = url.partition(b"?")
        if path == self.path:
            if method != b"POST":
                return response(405, b"method not allowed", allow="POST", keep_alive=keep_alive)
            if secret is None or not hmac.compare_digest(secret, self.secret):
                return response(403, b"forbidden", keep_alive=keep_alive)
            try:
                kept = self.on_update(body)
            except Exception as exc:  # not an update: Telegram never sends one, so say why
                log.warning("webhook: refused a request body: %s", type(exc).__name__)
                return response(400, b"bad update", keep_alive=keep_alive)
            ok = _OK if keep_alive else _OK_CLOSE
            return ok if kept is None else _after(kept, ok)
        if path == b"/healthz":
            if method not in (b"GET", b"HEAD"):
                allow = "GET, HEAD"
                return response(405, b"method not allowed", allow=allow, keep_alive=keep_alive)
            status, text, content_type = self.health(b"verbose" in query.split(b"&"))
            return response(
                status, text, content_type, keep_alive=keep_alive, head=method == b"HEAD"
            )
        return response(404, b"not found", keep_alive=keep_alive)


async def _after(kept: Awaitable[None], ok: bytes) -> bytes:
    await kept
    return ok


class _Connection(asyncio.Protocol):
    """One client connection; httptools calls the on_* methods as a request arrives, and several
    pipelined requests are answered in order."""

    def __init__(self, server: WebhookServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.idle_since = time.monotonic()
        self.begun: float | None = None
        """When the request now arriving began (None between requests)."""
        self._url = b""
        self._secret: bytes | None = None
        self._expect = False
        self._body: list[bytes] = []
        self._head = 0
        self._size = 0
        self._writing: asyncio.Future[None] | None = None
        """The answers still being made, in request order (pipelined requests)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.close()  # answered as plain HTTP (with Connection: close); no protocol switch
        except httptools.HttpParserCallbackError:
            if self.transport is not None:  # not one of our limits (they refuse first): a bug
                log.exception("webhook: answering a request failed")
                self._refuse(500)
        except httptools.HttpParserError:
            self._refuse(400)

    def _refuse(self, status: int) -> None:
        """Answer and close: the rest of the stream cannot be trusted to frame requests."""
        if self.transport is not None:
            self.transport.write(response(status, keep_alive=False))
            self.close()

    def _too_big(self, status: int) -> None:
        self._refuse(status)
        raise httptools.HttpParserError("request too large")

    # httptools callbacks, in the order a request brings them

    def on_message_begin(self) -> None:
        self.begun = time.monotonic()
        self._url = b""
        self._secret = None
        self._expect = False
        self._body = []
        self._head = self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head += len(url)
        if self._head > MAX_HEAD:
            self._too_big(431)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head += len(name) + len(value) + 4  # ": " and CRLF
        if self._head > MAX_HEAD:
            self._too_big(431)
        name = name.lower()
        if name == SECRET_HEADER:
            self._secret = value
        elif name == b"expect" and value.lower() == b"100-continue":
            self._expect = True

    def on_headers_complete(self) -> None:
        if self._expect and self.transport is not None:  # curl asks before a larger body
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            self._too_big(413)
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.begun = None
        self.idle_since = time.monotonic()
        if self.transport is None:
            return
        keep_alive = self.parser.should_keep_alive() and not self.parser.should_upgrade()
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        method = self.parser.get_method()
        answer = self.server.answer(method, self._url, self._secret, body, keep_alive)
        if isinstance(answer, bytes) and self._writing is None:
            self._write(answer, keep_alive)
            return
        writing = asyncio.ensure_future(self._write_later(self._writing, answer, keep_alive))
        self._writing = writing
        self.server.writing.add(writing)
        writing.add_done_callback(self._written)

    async def _write_later(
        self,
        before: asyncio.Future[None] | None,
        answer: bytes | Awaitable[bytes],
        keep_alive: bool,
    ) -> None:
        """Write an answer once it is made and the answers before it are written."""
        try:
            made = answer if isinstance(answer, bytes) else await answer
        except Exception:
            log.exception("webhook: answering a request failed")
            made, keep_alive = response(500, keep_alive=False), False
        if before is not None:
            await asyncio.wait({before})
        self._write(made, keep_alive)

    def _written(self, writing: asyncio.Future[None]) -> None:
        self.server.writing.discard(writing)
        if self._writing is writing:
            self._writing = None

    def _write(self, answer: bytes, keep_alive: bool) -> None:
        if self.transport is not None:
            self.transport.write(answer)
            if not keep_alive:
                self.close()
