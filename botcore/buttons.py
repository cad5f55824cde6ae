"""Inline buttons: what a keyboard's buttons mean is kept in the store, Telegram sees tokens.

A keyboard sent with a `Text` reply is recorded under a random id (72 bits: not guessable) with
the plugin that sent it, the user and chat it was sent to, each button's data and when it
expires; each button's callback_data is `b:<id>:<index>`, well inside Telegram's 64 bytes. A
press is honoured once per keyboard (an atomic claim in the store, so two instances, or a
client sending a press again, cannot both win), by that user in that chat (by any member when
the message named no person: sent on behalf of the chat), before it expires. Anything else, a
forged token included, is told the button no longer works and reaches no code.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botcore.store import Store
from botcore.types import Button

log = logging.getLogger(__name__)

NAMESPACE = "buttons"
"""Store records: keyboard id -> what `Keyboard.as_record` holds."""
PRESSED = "buttons.pressed"
"""Store counters: a keyboard's claim (limit 1) once pressed."""
TTL = 86400.0
"""Seconds a keyboard can be pressed after it was sent."""
SWEEP_EVERY = 3600.0
"""Seconds between deletions of the keyboards nobody pressed before they expired."""
PREFIX = "b:"


@dataclass(frozen=True)
class Pressed:
    """A press botcore honours: which plugin to call, with which data, from which keyboard."""

    plugin: str
    data: str
    keyboard: str


class Keyboards:
    """Issues keyboards and redeems presses against one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._swept = 0.0
        self._sweeping: asyncio.Task[None] | None = None

    async def issue(
        self,
        plugin: str,
        rows: Sequence[Sequence[Button]],
        *,
        user: int | None,
        chat: int,
    ) -> dict[str, Any]:
        """Keep a keyboard and return its reply_markup (Bot API JSON)."""
        keyboard = secrets.token_urlsafe(9)
        data = [button.data for row in rows for button in row]
        record = {
            "plugin": plugin,
            "user": user,
            "chat": chat,
            "data": data,
            "expires": time.time() + TTL,
        }
        await self.store.put(NAMESPACE, keyboard, record)
        self._sweep_now_and_then()
        index = iter(range(len(data)))
        return {
            "inline_keyboard": [
                [
                    {"text": button.text, "callback_data": f"{PREFIX}{keyboard}:{next(index)}"}
                    for button in row
                ]
                for row in rows
            ]
        }

    async def redeem(self, token: str | None, *, user: int | None, chat: int) -> Pressed | str:
        """The press behind `token`, claimed for good, or why it is refused: "expired" (unknown,
        forged, spent or too old) or "not_yours" (another user's keyboard; not spent)."""
        keyboard, index = _parse(token)
        if keyboard is None:
            return "expired"
        record = await self.store.get(NAMESPACE, keyboard)
        if not isinstance(record, dict) or float(record.get("expires", 0)) < time.time():
            return "expired"
        data = record.get("data")
        if not isinstance(data, list) or not 0 <= index < len(data):
            return "expired"
        if record.get("chat") != chat:
            return "expired"
        if record.get("user") is not None and record.get("user") != user:
            return "not_yours"
        if await self.store.add(PRESSED, keyboard, 1, limit=1, ttl=TTL) is None:
            return "expired"  # pressed already (here, on another instance, or sent again)
        await self.store.put(NAMESPACE, keyboard, None)
        return Pressed(str(record.get("plugin")), str(data[index]), keyboard)

    def _sweep_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._swept < SWEEP_EVERY or self._sweeping is not None:
            return
        self._swept = now
        self._sweeping = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Delete the keyboards that expired unpressed (they are refused anyway)."""
        try:
            now = time.time()
            for keyboard, record in (await self.store.scan(NAMESPACE)).items():
                if not isinstance(record, dict) or float(record.get("expires", 0)) < now:
                    await self.store.put(NAMESPACE, keyboard, None)
        except Exception as exc:  # the next sweep tries again
            log.warning("buttons: cannot delete expired keyboards: %r", exc)
        finally:
            self._sweeping = None

    async def close(self) -> None:
        """Wait for a sweep under way (the store closes next)."""
        if self._sweeping is not None:
            await asyncio.gather(self._sweeping, return_exceptions=True)


def _parse(token: str | None) -> tuple[str | None, int]:
    if not token or not token.startswith(PREFIX):
        return None, -1
    keyboard, _, index = token[len(PREFIX) :].rpartition(":")
    if not keyboard or not index.isdigit() or len(keyboard) > 32:
        return None, -1
    return keyboard, int(index)
