"""Updates as they come in: read one at a time (one that python-telegram-bot cannot parse is
skipped, not the batch around it), a token Telegram stops accepting reported, and each update_id
handled once."""

from __future__ import annotations

import asyncio
import datetime as dtm
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from telegram import Update
from telegram._utils.defaultvalue import DEFAULT_NONE, DefaultValue
from telegram._utils.types import JSONDict, ODVInput, TimePeriod
from telegram.error import InvalidToken
from telegram.ext import ExtBot

if TYPE_CHECKING:
    from botcore.store import Store

log = logging.getLogger(__name__)

SEEN_TTL = 24 * 3600.0
"""Seconds an update_id is remembered in a shared store: Telegram keeps an update (and retries a
webhook delivery) for at most a day."""
SEEN_LOCAL = 10_000
"""update_ids remembered in memory: many minutes of a busy bot, far more than a redelivery spans."""


class PollingBot(ExtBot[Any]):
    """python-telegram-bot's ExtBot, but getUpdates parses each update on its own.

    PTB parses a batch as a whole: one update it cannot read (a message without `date`, a type
    newer than PTB) fails the batch, unconfirmed, and polling fetches it again at once, for ever.
    Here such an update is logged once (its id and the error, never its content) and stands in
    the batch as a bare Update with only its id, so the offset moves past it and polling goes on.

    `on_rejected` is called once when Telegram refuses the token mid-run (revoked or changed with
    @BotFather): polling then waits to be stopped instead of ending with a traceback.
    """

    __slots__ = ("_on_rejected", "_rejected")

    def __init__(
        self, *args: Any, on_rejected: Callable[[InvalidToken], None], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_rejected = on_rejected  # "_": a Bot's public attributes are frozen
        self._rejected = False

    async def get_updates(
        self,
        offset: int | None = None,
        limit: int | None = None,
        timeout: TimePeriod | None = None,  # noqa: ASYNC109 (Bot.get_updates' own signature)
        allowed_updates: Sequence[str] | None = None,
        *,
        read_timeout: ODVInput[float] = DEFAULT_NONE,
        write_timeout: ODVInput[float] = DEFAULT_NONE,
        connect_timeout: ODVInput[float] = DEFAULT_NONE,
        pool_timeout: ODVInput[float] = DEFAULT_NONE,
        api_kwargs: JSONDict | None = None,
    ) -> tuple[Update, ...]:
        """Bot.get_updates, parsing update by update (see the class docstring)."""
        if self._rejected:  # the stop after a rejected token: nothing to fetch, nothing to confirm
            return ()
        seconds = timeout.total_seconds() if isinstance(timeout, dtm.timedelta) else timeout or 0
        # As PTB does: the long poll's own timeout on top of the read timeout.
        if isinstance(read_timeout, DefaultValue):
            read = (self._request[0].read_timeout or 0) + seconds
        else:
            read = (read_timeout or 0) + seconds
        data: JSONDict = {
            "timeout": timeout.total_seconds() if isinstance(timeout, dtm.timedelta) else timeout,
            "offset": offset,
            "limit": limit,
            "allowed_updates": allowed_updates,
        }
        try:
            result = await self._post(
                "getUpdates",
                data,
                read_timeout=read,
                write_timeout=write_timeout,
                connect_timeout=connect_timeout,
                pool_timeout=pool_timeout,
                api_kwargs=api_kwargs,
            )
        except InvalidToken as exc:
            self._rejected = True
            self._on_rejected(exc)
            await asyncio.Future()  # never done: Updater.stop() cancels this poll
            raise  # pragma: no cover (unreachable)
        updates = tuple(update for raw in result if (update := self._parse(raw)) is not None)
        for update in updates:
            self.insert_callback_data(update)
        return updates

    def _parse(self, raw: JSONDict) -> Update | None:
        try:
            return Update.de_json(raw, self)
        except Exception as exc:
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            kinds = ", ".join(k for k in raw if k != "update_id") if isinstance(raw, dict) else "?"
            log.warning(
                "skipped update %s (%s): python-telegram-bot cannot read it: %s: %s",
                update_id,
                kinds,
                type(exc).__name__,
                exc,
            )
            # Without an id there is nothing to confirm it by (Telegram always sends one).
            return Update(update_id) if isinstance(update_id, int) else None


class Seen:
    """Which update_ids were already taken: Telegram redelivers a webhook update whose answer it
    missed, and two instances polling one bot may both get an update. Each is handled once.

    In memory, the last SEEN_LOCAL ids; with a store that several processes share, each id is also
    claimed there (an atomic counter with a limit of 1), so only one instance handles it."""

    def __init__(self, store: Store, bot_id: Callable[[], int | None]) -> None:
        self.store = store
        self.bot_id = bot_id
        self._ids: set[int] = set()
        self._order: deque[int] = deque()

    async def first(self, update_id: int) -> bool:
        """True the first time `update_id` is offered, False for a repeat."""
        if update_id in self._ids:
            return False
        self._ids.add(update_id)
        self._order.append(update_id)
        if len(self._order) > SEEN_LOCAL:
            self._ids.discard(self._order.popleft())
        if not self.store.shared:
            return True
        key = f"{self.bot_id()}:{update_id}"  # one store may serve several bots
        try:
            return await self.store.add("updates", key, 1, limit=1, ttl=SEEN_TTL) is not None
        except Exception as exc:  # the store is down: answering twice beats not answering
            log.warning("store: cannot claim update %s: %s", update_id, type(exc).__name__)
            return True
