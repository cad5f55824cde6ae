"""The webhook server on raw sockets: what Telegram sends is queued and answered 200; everything
else (wrong secret, path or method, broken or oversized HTTP, pipelining, slow clients) gets its
status and never reaches the bot. The whole bot over its webhook: test_core_e2e, test_security."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import resource
import signal
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from botcore import webhook
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness
from botcore.webhook import WebhookServer

SECRET = "s3cret-for-the-webhook-test"
UPDATE = json.dumps({"update_id": 1, "message": {"text": "hi"}}).encode()


class Server:
    """A WebhookServer on a free loopback port, recording what it queued."""

    def __init__(self) -> None:
        self.updates: list[object] = []
        self.healthy = True
        self.server = WebhookServer("/hook", SECRET, self.on_update, self.health)

    def on_update(self, body: bytes) -> None:
        data = json.loads(body)
        if not isinstance(data, dict) or "update_id" not in data:
            raise ValueError("not an update")
        self.updates.append(data)

    def health(self, verbose: bool) -> tuple[int, bytes, str]:
        if verbose:
            return 200, b'{"status": "ok"}', "application/json"
        return (200, b"ok", "text/plain") if self.healthy else (503, b"unhealthy: x", "text/plain")

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def hook() -> AsyncIterator[Server]:
    server = Server()
    await server.server.start("127.0.0.1", 0)
    yield server
    await server.server.stop()


def post(
    body: bytes = UPDATE, *, secret: str | None = SECRET, path: str = "/hook", extra: str = ""
) -> bytes:
    headers = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    if secret is not None:
        headers += f"X-Telegram-Bot-Api-Secret-Token: {secret}\r\n"
    return (headers + extra + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def exchange(port: int, data: bytes, *, responses: int = 1) -> list[tuple[int, bytes, bytes]]:
    """Send raw bytes, read `responses` responses: (status, head, body) each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    found = []
    try:
        for _ in range(responses):
            found.append(await read_response(reader))
    finally:
        writer.close()
    return found


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status = int(head.split(b" ", 2)[1])
    if status == 100:
        return status, head, b""
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return status, head, await reader.readexactly(length)


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for the server to get somewhere (a failure if it never does)."""
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110  (the server has no event to wait on)
            await asyncio.sleep(0.01)


async def test_an_update_with_the_secret_is_queued_and_answered_empty(hook: Server) -> None:
    [(status, head, body)] = await exchange(hook.port, post())
    assert (status, body) == (200, b"")
    assert hook.updates == [json.loads(UPDATE)]
    assert b"connection: close" not in head.lower()


@pytest.mark.parametrize(
    "secret", [None, "", SECRET[:-1], SECRET + "x", SECRET.upper(), SECRET[1:]]
)
async def test_a_wrong_or_missing_secret_is_refused(hook: Server, secret: str | None) -> None:
    [(status, _, body)] = await exchange(hook.port, post(secret=secret))
    assert status == 403 and SECRET.encode() not in body
    assert hook.updates == []


async def test_paths_methods_and_bodies(hook: Server) -> None:
    get = f"GET /hook HTTP/1.1\r\nHost: x\r\nX-Telegram-Bot-Api-Secret-Token: {SECRET}\r\n\r\n"
    [(status, head, _)] = await exchange(hook.port, get.encode())
    assert status == 405 and b"Allow: POST" in head
    assert (await exchange(hook.port, post(path="/other")))[0][0] == 404
    assert (await exchange(hook.port, post(path="/hook/x")))[0][0] == 404
    assert (await exchange(hook.port, post(b"{not json")))[0][0] == 400
    assert (await exchange(hook.port, post(b"[1, 2]")))[0][0] == 400
    assert (await exchange(hook.port, post(b"")))[0][0] == 400
    assert hook.updates == []
    # The query string does not change the path.
    assert (await exchange(hook.port, post(path="/hook?x=1")))[0][0] == 200
    assert len(hook.updates) == 1


async def test_health_checks(hook: Server) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    [(status, head, body)] = await exchange(hook.port, request)
    assert (status, body) == (200, b"ok") and b"Content-Type: text/plain" in head
    [(status, head, body)] = await exchange(hook.port, b"GET /healthz?verbose HTTP/1.1\r\n\r\n")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert b"application/json" in head
    hook.healthy = False
    [(status, _, body)] = await exchange(hook.port, request)
    assert (status, body) == (503, b"unhealthy: x")
    # HEAD: the same status and length, no body.
    reader, writer = await asyncio.open_connection("127.0.0.1", hook.port)
    writer.write(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 503") and b"Content-Length: 12" in head
    # The next bytes are the second response, not a body of the first.
    assert (await read_response(reader))[2] == b"unhealthy: x"
    writer.close()
    posted = b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    [(status, head, _)] = await exchange(hook.port, posted)
    assert status == 405 and b"Allow: GET, HEAD" in head


async def test_pipelined_requests_are_answered_in_order(hook: Server) -> None:
    updates = [json.dumps({"update_id": n}).encode() for n in range(5)]
    data = (
        b"".join(post(u) for u in updates[:2])
        + post(secret="no")
        + b"".join(post(u) for u in updates[2:])
    )
    answers = await exchange(hook.port, data, responses=6)
    assert [status for status, _, _ in answers] == [200, 200, 403, 200, 200, 200]
    assert [u["update_id"] for u in hook.updates] == [0, 1, 2, 3, 4]  # type: ignore[index]


async def test_requests_split_anywhere_and_chunked_bodies(hook: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", hook.port)
    for byte in post():  # one byte at a time
        writer.write(bytes([byte]))
        await writer.drain()
    assert (await read_response(reader))[0] == 200
    head = f"POST /hook HTTP/1.1\r\nX-Telegram-Bot-Api-Secret-Token: {SECRET}\r\n"
    half = len(UPDATE) // 2
    chunked = (
        head.encode()
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + f"{half:x}\r\n".encode()
        + UPDATE[:half]
        + b"\r\n"
        + f"{len(UPDATE) - half:x}\r\n".encode()
        + UPDATE[half:]
        + b"\r\n0\r\n\r\n"
    )
    writer.write(chunked)
    assert (await read_response(reader))[0] == 200
    writer.close()
    assert hook.updates == [json.loads(UPDATE)] * 2


async def test_expect_continue_is_answered(hook: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", hook.port)
    head = post(extra="Expect: 100-continue\r\n")
    writer.write(head[: -len(UPDATE)])
    assert (await read_response(reader))[0] == 100
    writer.write(UPDATE)
    assert (await read_response(reader))[0] == 200
    writer.close()
    assert len(hook.updates) == 1


async def test_connection_close_and_http_1_0_are_honoured(hook: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", hook.port)
    writer.write(post(extra="Connection: close\r\n"))
    status, head, _ = await read_response(reader)
    assert status == 200 and b"Connection: close" in head
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed it
    writer.close()
    old = post().replace(b"HTTP/1.1", b"HTTP/1.0")
    [(status, head, _)] = await exchange(hook.port, old)
    assert status == 200 and b"Connection: close" in head


async def test_broken_and_oversized_requests_are_refused_and_closed(hook: Server) -> None:
    for data, expected in [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"POST /hook HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        # Upgrade is ignored (RFC 9110 7.8): a plain answer, then the connection is closed.
        (b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 404),
        (post(b"{" + b" " * webhook.MAX_BODY + b"}"), 413),
        (b"GET /" + b"a" * webhook.MAX_HEAD + b" HTTP/1.1\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * (webhook.MAX_HEAD // 7) + b"\r\n", 431),
    ]:
        reader, writer = await asyncio.open_connection("127.0.0.1", hook.port)
        writer.write(data)
        status, head, _ = await read_response(reader)
        assert status == expected, data[:40]
        assert b"Connection: close" in head
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    assert hook.updates == []


async def test_idle_and_slow_connections_are_closed(
    hook: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", hook.port)
    idle_writer.write(post())
    assert (await read_response(idle_reader))[0] == 200
    slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", hook.port)
    slow_writer.write(post()[:20])  # a request begun and never finished
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", hook.port)
    await asyncio.sleep(0.1)
    monkeypatch.setattr(webhook, "IDLE_TIMEOUT", 0.05)
    monkeypatch.setattr(webhook, "REQUEST_TIMEOUT", 0.05)
    monkeypatch.setattr(webhook, "HEAD_TIMEOUT", 0.05)
    hook.server._sweep()
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""
    assert await asyncio.wait_for(slow_reader.read(), 5) == b""
    assert await asyncio.wait_for(busy_reader.read(), 5) == b""  # connected, never spoke
    for writer in (idle_writer, slow_writer, busy_writer):
        writer.close()
    # A connection in use is left alone.
    monkeypatch.setattr(webhook, "IDLE_TIMEOUT", 60)
    reader, writer = await asyncio.open_connection("127.0.0.1", hook.port)
    writer.write(post())
    assert (await read_response(reader))[0] == 200
    hook.server._sweep()
    writer.write(post())
    assert (await read_response(reader))[0] == 200
    writer.close()


async def test_stop_closes_open_connections() -> None:
    server = Server()
    await server.server.start("127.0.0.1", 0)
    port = server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post())
    assert (await read_response(reader))[0] == 200
    await asyncio.wait_for(server.server.stop(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_failure_while_answering_is_a_logged_500(
    hook: Server, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(verbose: bool) -> tuple[int, bytes, str]:
        raise RuntimeError("a bug in the health check")

    hook.server.health = broken
    [(status, head, _)] = await exchange(hook.port, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert status == 500 and b"Connection: close" in head
    assert "webhook: answering a request failed" in caplog.text
    assert "a bug in the health check" in caplog.text
    assert (await exchange(hook.port, post()))[0][0] == 200  # the server goes on


async def test_an_update_without_the_secret_is_refused_from_its_head(hook: Server) -> None:
    """The secret and Content-Length are checked once the headers are in: a request without the
    secret gets its 403 before its body arrives, and the body is dropped as it comes, never held
    (300 unfinished 1 MB ones took 300 MB); an oversized one gets 413 unread."""
    whole = webhook.MAX_BODY
    head = post(b"x" * whole, secret="wrong")[:-whole]
    part = b"x" * (whole // 2)
    clients = []
    for _ in range(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", hook.port)
        writer.write(head + part)  # half the body: the request is unfinished
        clients.append((reader, writer))
    for reader, _ in clients:
        status, answer, _ = await read_response(reader)
        assert status == 403 and b"connection: close" not in answer.lower()
    await until(lambda: sum(c.received for c in hook.server.connections) == 10 * len(part))
    assert [c.buffered for c in hook.server.connections] == [0] * 10
    # The body is still read to its end, so the connection goes on with the next request.
    reader, writer = clients[0]
    writer.write(b"x" * (whole - len(part)) + post())
    assert (await read_response(reader))[0] == 200
    for _, writer in clients:
        writer.close()
    # Too long for an update: refused from its Content-Length, secret or not, and closed.
    reader, writer = await asyncio.open_connection("127.0.0.1", hook.port)
    writer.write(post(b"x" * (whole + 1))[: -(whole + 1)] + b"x" * 1000)
    status, answer, _ = await read_response(reader)
    assert status == 413 and b"Connection: close" in answer
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert hook.updates == [json.loads(UPDATE)]


async def test_past_the_cap_the_longest_silent_connection_makes_room(hook: Server) -> None:
    hook.server.cap = 4
    silent = [await asyncio.open_connection("127.0.0.1", hook.port) for _ in range(10)]
    reader, writer = await asyncio.open_connection("127.0.0.1", hook.port)
    writer.write(post())
    assert (await read_response(reader))[0] == 200
    assert len(hook.server.connections) <= 4
    # The four slots: the update's connection and three others; the rest were closed.
    await until(lambda: sum(r.at_eof() for r, _ in silent) >= 10 - 3)
    for _, silent_writer in silent:
        silent_writer.close()
    writer.close()


class _Starved:
    """A listening socket whose accept() fails as out of file descriptors, until fed."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.starved = True
        self.calls = 0

    def fileno(self) -> int:
        return self.real.fileno()

    def accept(self) -> tuple[socket.socket, object]:
        self.calls += 1
        if self.starved:
            raise OSError(errno.EMFILE, "Too many open files")
        return self.real.accept()


async def test_a_failing_accept_pauses_with_one_log_line_and_frees_a_descriptor(
    hook: Server, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio retried a failing accept() at once and logged each failure (42,960 lines in 16 s
    without file descriptors); here accepting pauses, with a backoff, one log line, and the
    connection silent longest is closed to give a descriptor back."""
    monkeypatch.setattr(webhook, "ACCEPT_RETRY", (0.01, 0.05))
    caplog.set_level(logging.WARNING, logger="botcore.webhook")
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", hook.port)
    await until(lambda: len(hook.server.connections) == 1)
    loop = asyncio.get_running_loop()
    port = hook.port
    real = hook.server.sockets[0]
    starved = _Starved(real)
    loop.remove_reader(real.fileno())
    loop.add_reader(real.fileno(), hook.server._accept, starved)
    hook.server.sockets = [starved]  # type: ignore[list-item]  # what _resume listens on
    try:
        await _starve(hook, starved, port, caplog, idle_reader)
    finally:
        hook.server.sockets = [real]
        idle_writer.close()


async def _starve(
    hook: Server,
    starved: _Starved,
    port: int,
    caplog: pytest.LogCaptureFixture,
    idle_reader: asyncio.StreamReader,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # waits in the backlog
    writer.write(post())
    await until(lambda: starved.calls >= 6)
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""  # closed to free a descriptor
    lines = [r for r in caplog.records if "cannot accept" in r.getMessage()]
    assert len(lines) == 1 and "Too many open files" in lines[0].getMessage()
    assert lines[0].exc_info is None  # one line, no traceback
    starved.starved = False
    assert (await read_response(reader))[0] == 200  # accepting resumed by itself
    writer.close()


async def test_idle_sockets_under_a_low_file_limit_leave_the_webhook_answering(
    telegram: FakeTelegram, bot_harness: BotHarness, bot_output
) -> None:
    """The real `botcore run` with 256 file descriptors, 600 silent connections to its webhook:
    an update that comes after them is still answered, and the log stays a few lines (before:
    no answer, and asyncio's "socket.accept() out of system resource" with a traceback, again
    and again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = bot_harness.write_config(
        "bot.toml",
        ["chat"],
        settings={"chat": {"stream": False}},
        bot={
            "mode": "webhook",
            "webhook": {
                "url": f"http://127.0.0.1:{port}/hook",
                "listen": "127.0.0.1",
                "port": port,
                "path": "/hook",
            },
        },
    )

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    bot = await bot_harness.spawn(
        config,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=low_limit,
    )
    loop = asyncio.get_running_loop()
    held: list[socket.socket] = []

    async def hold() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        held.append(sock)
        # Past the backlog of a server that stopped accepting, a connect never completes.
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 5)

    try:
        await telegram.wait_for(
            lambda: telegram.webhook is not None or bot.returncode is not None, timeout=30
        )
        assert bot.returncode is None, (await bot.stderr.read()).decode() if bot.stderr else ""
        await asyncio.gather(*(hold() for _ in range(600)))
        await telegram.send_message("still there?")
        assert (await telegram.next_message(42, timeout=30)).text == "echo: still there?"
    finally:
        for sock in held:
            sock.close()
        if bot.returncode is None:
            bot.send_signal(signal.SIGTERM)
        await bot.wait()
        stderr = (await bot.stderr.read()).decode() if bot.stderr else ""
        bot_output(stderr)
    assert "out of system resource" not in stderr
    assert len(stderr.splitlines()) < 40, stderr[-2000:]
