"""What the PostgreSQL and Redis stores share: safe error messages and a leased, ordered lock.

A lock held across processes is a lease on the server: it lasts `timeout` seconds and the holder
renews it while the block runs, so a holder that dies (kill -9, a lost host) frees it within
`timeout` and a live one keeps it however long its turn takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol
from urllib.parse import unquote, urlsplit

from botcore import Signal

log = logging.getLogger("botcore.store")

OLD_CONVERSATIONS = "history"
"""Where a schema-1 store's conversations go at open, as in botcore's own SQLite store: the list
namespace of the history plugin, which was their only writer (schema 2 keeps generic lists)."""
WAITER_TTL = 10.0
"""A waiter that stops polling for this long (its process died) loses its place in line."""


class StoreUnavailable(Exception):
    """The store's server cannot be reached or refused us; the message never holds a password."""


def where(url: str) -> str:
    """host:port/db of a server URL, without user or password, for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable url)"
    return f"{host}{port}{parts.path}"


def unavailable(what: str, url: str, exc: BaseException) -> StoreUnavailable:
    """A StoreUnavailable naming the server, with every trace of the URL's password removed."""
    detail = f"{type(exc).__name__}: {exc}"
    password = _password(url)
    # Longest first: the URL before the password inside it; short passwords too.
    for secret in sorted({url, *([password, unquote(password)] if password else [])}, key=len)[
        ::-1
    ]:
        detail = detail.replace(secret, "***")
    return StoreUnavailable(f"{what} at {where(url)}: {detail}")


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


class Leases(Protocol):
    """The three server-side steps of a leased lock, one round trip each (`lease`: seconds)."""

    async def try_acquire(self, name: str, token: str, order: int | None, lease: float) -> bool:
        """Take the lease if it is free (and, with `order`, if no live waiter comes first)."""
        ...

    async def renew(self, name: str, token: str, lease: float) -> bool:
        """Extend our lease to `lease` seconds from now; False if it was lost."""
        ...

    async def release(self, name: str, token: str) -> None:
        """End our lease (if still ours) and leave the line of waiters."""
        ...


@contextlib.asynccontextmanager
async def hold(leases: Leases, name: str, lease: float, order: int | None) -> AsyncIterator[None]:
    """Poll for the lease (5 ms, doubling to 50 ms), renew it every lease/3, release it."""
    token = secrets.token_hex(16)
    delay = 0.005
    task = asyncio.current_task()
    try:
        while True:
            asked = task.cancelling() if task is not None else 0
            if await leases.try_acquire(name, token, order, lease):
                break
            if task is not None and task.cancelling() > asked:
                # Cancelled while the client ran the command, which swallowed the cancel
                # (redis-py 8.2 does): without this a wait_for around the lock never returned.
                raise asyncio.CancelledError
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(leases.release(name, token))
        raise
    renewer = asyncio.create_task(_renew(leases, name, token, lease))
    try:
        yield
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        try:
            await asyncio.shield(leases.release(name, token))
        except Exception as exc:  # the lease then ends by itself after `timeout`
            log.warning("store: releasing lock %r failed: %s", name, type(exc).__name__)


async def _renew(leases: Leases, name: str, token: str, lease: float) -> None:
    while True:
        await asyncio.sleep(lease / 3)
        try:
            if not await leases.renew(name, token, lease):
                log.warning("store: lock %r was lost (held past its lease)", name)
                return
        except Exception as exc:
            log.warning("store: renewing lock %r failed: %s", name, type(exc).__name__)


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task (a signal listener) and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def received(listeners: Sequence[Callable[[Signal], None]], payload: str | bytes) -> None:
    """A signal as it came from the server: JSON, handed on when it is an object (anything else
    is not ours and is dropped)."""
    try:
        message = json.loads(payload)
    except (ValueError, TypeError):
        return
    if isinstance(message, dict):
        for callback in listeners:  # one that raises is logged; the rest still run
            try:
                callback(message)
            except Exception:
                log.exception("store: a signal listener failed")
