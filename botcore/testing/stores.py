"""Test servers for the shared stores: where they are, and how to start each test from empty.

scripts/services.sh (run by ./test.sh) starts private PostgreSQL and Redis servers and exports
BOTCORE_TEST_POSTGRES_URL and BOTCORE_TEST_REDIS_URL. Without them a test that needs a server is
skipped with the reason, except under CI=true, where a missing server fails the test.

Under pytest-xdist the workers run tests at the same time, and a test wipes the server it uses:
each worker gets a server of its own. PostgreSQL: a database `botcore_<worker>` on the same
server (created on first use, kept for the next run); its LISTEN/NOTIFY, advisory locks and
sessions are per database. Redis: its pub/sub channels span every database index, so the worker
starts a `redis-server` of its own (same password, a free loopback port; `stop_worker_servers`
ends it, and `scripts/services.sh stop` ends one a killed worker left behind).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

from botcore.store import Store

Server = Literal["postgres", "redis"]
SERVERS: tuple[Server, ...] = ("postgres", "redis")
ENV = {"postgres": "BOTCORE_TEST_POSTGRES_URL", "redis": "BOTCORE_TEST_REDIS_URL"}
WORKER = "PYTEST_XDIST_WORKER"
"""Set by pytest-xdist in each worker process: gw0, gw1..."""

_worker_urls: dict[Server, str] = {}
_worker_redis: list[tuple[subprocess.Popen[bytes], Path]] = []


def server_url(backend: Server) -> str:
    """The test server's URL (this xdist worker's own); skips (fails under CI=true) when it is
    not set."""
    url = os.environ.get(ENV[backend])
    if url:
        worker = os.environ.get(WORKER)
        if worker is None:
            return url
        if backend not in _worker_urls:
            if backend == "postgres":
                _worker_urls[backend] = _worker_database(url, worker)
            else:
                _worker_urls[backend] = _start_worker_redis(url, worker)
        return _worker_urls[backend]
    _unavailable(
        backend, f"{ENV[backend]} is not set (./test.sh starts a {backend} server and sets it)"
    )


def _unavailable(backend: Server, reason: str) -> NoReturn:
    """Skip the test, or fail it under CI=true, where every backend must be tested."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI needs the {backend} tests: {reason}")
    pytest.skip(reason)


def _worker_database(url: str, worker: str) -> str:
    """The URL of the database `botcore_<worker>` on the server of `url`, created if missing."""
    import asyncpg

    name = f"botcore_{worker}"

    async def create() -> None:
        connection = await asyncpg.connect(url, timeout=10)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass  # made by an earlier run on the same server
        finally:
            await connection.close()

    # A thread of its own: the caller may be a coroutine, in a running event loop.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, create()).result()
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _start_worker_redis(url: str, worker: str) -> str:
    """Start a Redis server for this worker, with the password of `url`; its URL."""
    parts = urlsplit(url)
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable(
            "redis",
            "under pytest-xdist each worker starts a redis-server of its own (pub/sub spans a "
            "server's databases), and there is none on PATH: install it, or run with -n 0",
        )
    services = os.environ.get("BOTCORE_SERVICES_DIR")
    if services and Path(services).is_dir():
        folder = Path(services) / f"redis-{worker}"
        folder.mkdir(exist_ok=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix=f"botcore-redis-{worker}."))
    password = parts.password or ""
    for _ in range(5):  # another process may take the free port before redis binds it
        port = _free_port()
        command = [
            binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
            "--pidfile", str(folder / "redis.pid"), "--logfile", str(folder / "redis.log"),
            "--save", "", "--appendonly", "no",
        ]  # fmt: skip
        if password:
            command += ["--requirepass", password]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        if _answers(process, port, password):
            _worker_redis.append((process, folder))
            host = parts.netloc.rpartition("@")[0]
            netloc = f"{host}@127.0.0.1:{port}" if host else f"127.0.0.1:{port}"
            return urlunsplit(parts._replace(netloc=netloc))
        process.kill()
        process.wait()
    log = (folder / "redis.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the Redis server of worker {worker} did not start:\n{log}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(process: subprocess.Popen[bytes], port: int, password: str) -> bool:
    """Wait (10 s at most) until the server at `port` answers PING; False if it exited."""
    request = b""
    if password:
        secret = password.encode()
        request += b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret)
    request += b"*1\r\n$4\r\nPING\r\n"
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                connection.sendall(request)
                answer = b""
                while b"PONG" not in answer and (chunk := connection.recv(256)):
                    answer += chunk
                if b"PONG" in answer:
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def stop_worker_servers() -> None:
    """Stop the Redis servers this process started (tests/conftest.py calls it at the end)."""
    while _worker_redis:
        process, folder = _worker_redis.pop()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
    _worker_urls.clear()


def server_store(backend: Server) -> Store:
    """A new, unopened store on the test server, made by the backend's `botcore.stores` entry
    point, as `[store] backend` would be (botcore_shared_stores.testing wipes one)."""
    from botcore.store import store_backends

    factory: Callable[[str], Store] = store_backends()[backend].load()
    return factory(server_url(backend))
