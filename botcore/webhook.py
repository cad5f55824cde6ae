"""The webhook server: Telegram's POSTs parsed by httptools on a bare asyncio protocol.

An update needs no router, middleware, streaming body or task of its own: its request is read
whole, checked and queued in one synchronous step, and its answer is a prebuilt empty 200. The
aiohttp server spent ~0.13 ms of CPU more per update on its request, response, writer and task
objects, which made a webhook drain 1.2x a polling one (bench/, webhook preset).

Connections are accepted here too, not by loop.create_server: their number is capped (the one
idle longest makes room for a new one), and a failing accept() (out of file descriptors) pauses
accepting with a backoff and one log line, where asyncio retries at once and logs each failure.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import socket
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
MAX_CONNECTIONS = 512
"""Connections open at once, at most; fewer when the file limit is low (see `connection_cap`).
Telegram opens up to 100 (setWebhook max_connections, 40 by default)."""
HEAD_TIMEOUT = 5.0
"""Seconds a request's line and headers may take to arrive, counted from its first byte, or
from the connection for its first request: a connection that says nothing is closed."""
IDLE_TIMEOUT = 75.0
"""Seconds a keep-alive connection may sit idle between requests before it is closed."""
REQUEST_TIMEOUT = 30.0
"""Seconds one request may take to arrive whole (a client that trickles it in is cut off)."""
SWEEP_EVERY = 1.0
"""How often idle and slow connections are looked for (one timer, not one per request)."""
BACKLOG = 128
"""Connections the kernel may hold for accept()."""
ACCEPT_RETRY = (0.05, 2.0)
"""Seconds accepting pauses after accept() fails: the first pause, doubled up to the second."""
WARN_EVERY = 60.0
"""Seconds between log lines about failed accepts or refused connections (the rest are counted)."""
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
        self.cap = connection_cap()
        """Connections (and TLS handshakes) open at once, at most."""
        self.connections: set[_Connection] = set()
        self.writing: set[asyncio.Future[None]] = set()
        """Answers waiting for their update to be kept (journaled)."""
        self.sockets: list[socket.socket] = []
        """The listening sockets."""
        self._tls: ssl.SSLContext | None = None
        self._connecting: set[asyncio.Task[None]] = set()
        self._handshakes = 0
        """Connections accepted whose protocol is not made yet (a TLS handshake in progress)."""
        self._paused: dict[socket.socket, asyncio.TimerHandle] = {}
        self._failures = 0
        """accept() failures in a row: the backoff grows with them."""
        self._warned = -WARN_EVERY
        self._unlogged = 0
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        """Listen on host:port, over TLS with `tls` (OSError if that is not possible)."""
        loop = asyncio.get_running_loop()
        self._tls = tls
        self.sockets = await _listen(loop, host, port)
        for sock in self.sockets:
            loop.add_reader(sock.fileno(), self._accept, sock)
        self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep)

    async def stop(self) -> None:
        """Stop listening and close every connection (each request was answered when it came)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self.writing:  # each is a store write or two away: Telegram gets its 200
            await asyncio.wait(set(self.writing))
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        self.sockets = []
        for timer in self._paused.values():
            timer.cancel()
        self._paused.clear()
        for task in self._connecting:
            task.cancel()
        await asyncio.gather(*self._connecting, return_exceptions=True)
        for connection in list(self.connections):
            connection.close()
        await asyncio.sleep(0)  # their connection_lost, which closes the sockets, runs now

    def _accept(self, sock: socket.socket) -> None:
        """The listening socket is readable: accept what is waiting (a bounded batch per turn)."""
        for _ in range(BACKLOG):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._accept_failed(sock, exc)
                return
            self._failures = 0
            self._serve(conn)

    def _accept_failed(self, sock: socket.socket, exc: OSError) -> None:
        """Pause accepting on `sock` for a while: an fd-starved accept() fails again at once
        (and the socket stays readable), so retrying in a loop only burns CPU and log."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(sock.fileno())
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            self._evict()  # gives back a file descriptor for the connections still waiting
        first, longest = ACCEPT_RETRY
        delay = min(longest, first * 2 ** min(self._failures, 16))
        self._failures += 1
        self._warn(
            "webhook: cannot accept connections (%s; %d open, at most %d): pausing %.2g s",
            exc.strerror or exc,
            len(self.connections) + self._handshakes,
            self.cap,
            delay,
        )
        self._paused[sock] = loop.call_later(delay, self._resume, sock)

    def _resume(self, sock: socket.socket) -> None:
        self._paused.pop(sock, None)
        if sock in self.sockets:
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock)

    def _warn(self, message: str, *args: object) -> None:
        """Log at most one line per WARN_EVERY seconds; the next one says how many were not."""
        now = time.monotonic()
        if now - self._warned < WARN_EVERY:
            self._unlogged += 1
            return
        if self._unlogged:
            message += " (%d more such events since the last line)"
            args += (self._unlogged,)
        self._warned, self._unlogged = now, 0
        log.warning(message, *args)

    def _serve(self, conn: socket.socket) -> None:
        """Start serving an accepted connection, closing the one idle longest if at the cap."""
        if len(self.connections) + self._handshakes >= self.cap and not self._evict():
            conn.close()  # every slot holds a request in progress or a TLS handshake
            self._warn("webhook: %d connections open, refusing new ones", self.cap)
            return
        conn.setblocking(False)
        self._handshakes += 1
        task = asyncio.get_running_loop().create_task(self._connect(conn))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, conn: socket.socket) -> None:
        """Make the transport and protocol of an accepted socket (after the TLS handshake)."""
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: _Connection(self),
                conn,
                ssl=self._tls,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if self._tls else None,
            )
        except OSError as exc:  # ssl.SSLError and TimeoutError (the handshake's) are OSErrors
            log.debug("webhook: a connection failed before its first request: %r", exc)
            conn.close()
        finally:
            self._handshakes -= 1

    def _evict(self) -> bool:
        """Close the connection that has been waiting longest for a request (or for the rest
        of its head), to make room; one receiving an authenticated update is never chosen."""
        waiting = [c for c in self.connections if not c.trusted]
        if not waiting:
            return False
        min(waiting, key=_Connection.since).close()
        return True

    def _sweep(self) -> None:
        """Close connections silent past HEAD_TIMEOUT, idle past IDLE_TIMEOUT, or in a request
        begun REQUEST_TIMEOUT ago."""
        now = time.monotonic()
        for connection in list(self.connections):
            if connection.begun is not None:
                if now - connection.begun > REQUEST_TIMEOUT or (
                    not connection.headed and now - connection.begun > HEAD_TIMEOUT
                ):
                    connection.close()
            elif now - connection.idle_since > (
                IDLE_TIMEOUT if connection.served else HEAD_TIMEOUT
            ):
                connection.close()
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._sweep)

    def refusal(self, method: bytes, url: bytes, secret: bytes | None, length: int) -> int:
        """The status that refuses a request from its head alone (0: read its body): an update
        without the secret, or one longer than MAX_BODY, is never buffered."""
        if length > MAX_BODY:
            return 413
        wrong = secret is None or not hmac.compare_digest(secret, self.secret)
        return 403 if wrong and self.wants_body(method, url) else 0

    def wants_body(self, method: bytes, url: bytes) -> bool:
        """Whether a request's body is used: only an update's (others are read and dropped)."""
        return method == b"POST" and url.partition(b"?")[0] == self.path

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


def connection_cap() -> int:
    """MAX_CONNECTIONS, or a quarter of the soft file limit if that is less: the rest is for
    the store, the logs and the connections to Telegram and the model."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # no such limit here (Windows)
        return MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(4, min(MAX_CONNECTIONS, soft // 4))


async def _listen(loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[socket.socket]:
    """Listening sockets for host:port, one per address it resolves to (as create_server)."""
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # "::" is v6 alone
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


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
        self.headed = False
        """Whether the request now arriving has all its headers."""
        self.served = False
        """Whether a request was answered: only then may the connection idle for IDLE_TIMEOUT."""
        self.trusted = False
        """Whether an update with the right secret is arriving (its connection is not evicted)."""
        self.received = 0
        """Body bytes of the request now arriving (held only if it is an update)."""
        self._url = b""
        self._secret: bytes | None = None
        self._length = 0
        self._expect = False
        self._keep = False
        self._answered = False
        self._draining = False
        """Refused: what arrives is dropped until the client closes."""
        self._body: list[bytes] = []
        self._head = 0
        self._writing: asyncio.Future[None] | None = None
        """The answers still being made, in request order (pipelined requests)."""

    @property
    def buffered(self) -> int:
        """Body bytes held for the update now arriving (an update's alone are held)."""
        return sum(map(len, self._body))

    def since(self) -> float:
        """When the connection began to wait for what it is waiting for (eviction order)."""
        return self.idle_since if self.begun is None else self.begun

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def close(self) -> None:
        self.server.connections.discard(self)  # its slot is free now, not when it is lost
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def data_received(self, data: bytes) -> None:
        if self._draining:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.close()  # answered as plain HTTP (with Connection: close); no protocol switch
        except httptools.HttpParserCallbackError:
            if self.transport is not None and not self._draining:  # not one of our limits: a bug
                log.exception("webhook: answering a request failed")
                self._refuse(500)
        except httptools.HttpParserError:
            self._refuse(400)

    def _refuse(self, status: int) -> None:
        """Answer and end the connection: the rest of the stream cannot be trusted to frame
        requests. What the client still sends is read and dropped until it closes (or for
        HEAD_TIMEOUT): closing with unread data would reset the connection, and the client
        could lose the answer before reading it."""
        if self.transport is None:
            return
        self.transport.write(response(status, keep_alive=False))
        if not self.transport.can_write_eof():  # TLS: no half-close
            self.close()
            return
        self.transport.write_eof()
        self._draining = True
        self.begun, self.idle_since, self.served = None, time.monotonic(), False

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def _too_big(self, status: int) -> None:
        self._refuse(status)
        raise httptools.HttpParserError("request too large")

    # httptools callbacks, in the order a request brings them

    def on_message_begin(self) -> None:
        self.begun = time.monotonic()
        self.headed = self.trusted = self._expect = self._keep = self._answered = False
        self._url = b""
        self._secret = None
        self._body = []
        self._head = self._length = self.received = 0

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
        elif name == b"content-length" and value.strip().isdigit():  # the parser checks it
            self._length = int(value)
        elif name == b"expect" and value.lower() == b"100-continue":
            self._expect = True

    def on_headers_complete(self) -> None:
        self.headed = True
        method = self.parser.get_method()
        status = self.server.refusal(method, self._url, self._secret, self._length)
        if status == 413:
            self._too_big(413)
        if status and self.transport is not None:
            # Answered now, before the body: an unauthenticated one is read and dropped, never
            # held (300 unfinished 1 MB bodies took 300 MB), and an Expect client sends none.
            keep_alive = self.parser.should_keep_alive()
            self.transport.write(response(status, b"forbidden", keep_alive=keep_alive))
            self._answered = True
            if not keep_alive:
                self.close()
            return
        self._keep = self.trusted = self.server.wants_body(method, self._url)
        if self._expect and self.transport is not None:  # curl asks before a larger body
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.received += len(body)
        if self.received > MAX_BODY:
            self._too_big(413)
        if self._keep:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self.begun = None
        self.idle_since = time.monotonic()
        self.served = True
        self.trusted = False
        if self.transport is None:
            return
        if self._answered:  # refused from its head; its body is read and dropped
            return
        keep_alive = self.parser.should_keep_alive() and not self.parser.should_upgrade()
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body = []
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
