"""The delivery scheduler alone, on a virtual clock, against botcore.testing.flood's model of
Telegram: budgets kept, finals first, previews coalesced and dropped, 429s respected."""

from __future__ import annotations

import asyncio
import datetime as dt
import selectors
import warnings
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from telegram.error import RetryAfter
from telegram.warnings import PTBDeprecationWarning

from botcore.scheduler import Deferred, Dropped, Kind, Limits, Scheduler
from botcore.testing.flood import TELEGRAM_LIMITS, FloodControl, FloodLimits

T = TypeVar("T")


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer whenever nothing else is ready, so that
    minutes of flood control take milliseconds and every time in a test is exact."""

    def __init__(self) -> None:
        super().__init__(selectors.SelectSelector())
        self.now = 0.0
        real_select = self._selector.select  # type: ignore[attr-defined]

        def select(timeout: float | None = None) -> list[Any]:
            events: list[Any] = real_select(0)
            if not events and timeout is not None and timeout > 0:
                self.now += timeout
            elif not events and timeout is None:
                raise RuntimeError("deadlock: nothing scheduled and nothing ready")
            return events

        self._selector.select = select  # type: ignore[attr-defined]

    def time(self) -> float:
        return self.now


def run(coro: Coroutine[Any, Any, T]) -> T:
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def too_many(seconds: float) -> RetryAfter:
    """Telegram's 429 as PTB raises it (its constructor warns about int periods: not ours)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        return RetryAfter(dt.timedelta(seconds=seconds))


class Api:
    """Telegram's side: the flood model on the loop's clock, plus bans a test opens by hand
    (a call inside one is a violation, as Telegram lengthens the ban for it)."""

    def __init__(self, limits: FloodLimits = TELEGRAM_LIMITS, latency: float = 0.05) -> None:
        self.loop = asyncio.get_running_loop()
        self.flood = FloodControl(limits, clock=self.loop.time)
        self.latency = latency
        self.calls: list[tuple[float, str, dict[str, Any]]] = []
        self.bans: dict[int | None, float] = {}  # chat (None: everyone) -> banned until
        self.violations = 0
        self._next_id = 0

    def ban(self, chat_id: int | None, seconds: int) -> None:
        """The next message call for ``chat_id`` (any chat: None) is answered 429 and opens a ban."""
        self.bans[chat_id] = -float(seconds)  # negative: armed, opens on the next call

    async def post(self, method: str, data: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(self.latency)
        now = self.loop.time()
        chat_id = data["chat_id"]
        typing = method in ("sendChatAction", "sendMessageDraft")
        if not typing:
            for scope in (chat_id, None):
                until = self.bans.get(scope)
                if until is None:
                    continue
                if until < 0:  # armed: this call opens the ban
                    self.bans[scope] = now - until
                    raise too_many(-until)
                if now < until:
                    self.violations += 1
                    raise too_many(max(1, round(until - now)))
        refused, _ = self.flood.admit(
            method, chat_id, kind="typing" if typing else "message", group=chat_id < 0
        )
        if refused is not None:
            raise too_many(refused.retry_after)
        self.calls.append((now, method, data))
        self._next_id += 1
        return {"message_id": self._next_id, "chat": {"id": chat_id}}

    def texts(self, chat_id: int, method: str | None = None) -> list[str]:
        return [
            d.get("text", d.get("action", ""))
            for _, m, d in self.calls
            if d["chat_id"] == chat_id and (method is None or m == method)
        ]


async def call(
    scheduler: Scheduler, api: Api, method: str, kind: Kind | None = None, **data: Any
) -> Any:
    return await scheduler.process_request(api.post, (method, data), {}, method, data, kind)


async def settle(scheduler: Scheduler) -> None:
    """Let queued work run out (virtual time makes the wait free)."""
    for _ in range(1000):
        if not scheduler._queued and not scheduler._tasks and scheduler._dispatcher is None:
            return
        await asyncio.sleep(0.5)
    raise AssertionError("the scheduler never went idle")


def test_an_uncontended_call_goes_at_once_and_leaves_nothing_running() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(), Api()
        result = await call(scheduler, api, "sendMessage", chat_id=1, text="hi")
        assert result["chat"]["id"] == 1
        assert api.calls[0][0] == pytest.approx(0.05)  # no wait but the network's
        assert scheduler.stats["sent_at_once"] == 1
        assert scheduler._dispatcher is None and not scheduler._tasks

    run(main())


def test_one_chat_is_paced_within_telegrams_budget_and_keeps_its_order() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(), Api()
        texts = [f"m{i}" for i in range(10)]
        await asyncio.gather(
            *(call(scheduler, api, "sendMessage", chat_id=7, text=t) for t in texts)
        )
        assert api.texts(7) == texts
        assert api.flood.rejections == 0
        times = [t for t, _, _ in api.calls]
        assert times[-1] >= 8.0  # 2 at once, then one a second

    run(main())


def test_a_group_gets_20_messages_a_minute_and_no_more() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(), Api()
        texts = [f"answer {i}" for i in range(25)]
        await asyncio.gather(
            *(call(scheduler, api, "sendMessage", chat_id=-100, text=t) for t in texts)
        )
        assert api.texts(-100) == texts
        assert api.flood.rejections == 0
        assert api.calls[20][0] >= 60.0

    run(main())


def test_the_global_budget_holds_across_many_chats() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(), Api()
        await asyncio.gather(
            *(call(scheduler, api, "sendMessage", chat_id=c, text="x") for c in range(1, 301))
        )
        assert len(api.calls) == 300
        assert api.flood.rejections == 0
        assert api.calls[-1][0] >= 9.0  # 300 at 30 a second

    run(main())


def test_finals_go_before_previews_queued_earlier() -> None:
    async def main() -> None:
        limits = Limits(global_per_second=2, global_burst=1)
        scheduler = Scheduler(limits)
        api = Api(FloodLimits(global_per_second=2))
        await call(scheduler, api, "sendMessage", chat_id=1, text="spend the burst")
        for chat in (2, 3, 4):
            with pytest.raises(Deferred):
                await call(
                    scheduler, api, "editMessageText", "preview", chat_id=chat, message_id=1,
                    text="preview",
                )  # fmt: skip
        await asyncio.gather(
            *(call(scheduler, api, "sendMessage", chat_id=c, text="final") for c in (5, 6))
        )
        await settle(scheduler)
        order = [d["text"] for _, _, d in api.calls[1:]]
        assert order == ["final", "final", "preview", "preview", "preview"]
        assert api.flood.rejections == 0

    run(main())


def test_queued_previews_of_one_message_coalesce_to_the_newest_text() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(), Api()
        await call(scheduler, api, "sendMessage", chat_id=1, text="a")
        await call(scheduler, api, "editMessageText", "preview", chat_id=1, message_id=1, text="ab")
        for text in ("abc", "abcd", "abcde"):
            with pytest.raises(Deferred):
                await call(
                    scheduler, api, "editMessageText", "preview", chat_id=1, message_id=1, text=text
                )
        await settle(scheduler)
        assert api.texts(1) == ["a", "ab", "abcde"]
        assert scheduler.stats["coalesced"] == 2
        assert api.flood.rejections == 0

    run(main())


def test_a_final_drops_the_queued_previews_of_its_chat_and_goes_first() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(), Api()
        await call(scheduler, api, "sendMessage", chat_id=1, text="a")
        await call(scheduler, api, "editMessageText", "preview", chat_id=1, message_id=1, text="ab")
        with pytest.raises(Deferred):
            await call(
                scheduler, api, "editMessageText", "preview", chat_id=1, message_id=1, text="abc"
            )
        with pytest.raises(Dropped):  # a new message as a preview is not worth a wait
            await call(scheduler, api, "sendMessage", "preview", chat_id=1, text="second piece")
        await call(scheduler, api, "editMessageText", chat_id=1, message_id=1, text="final")
        await settle(scheduler)
        assert api.texts(1) == ["a", "ab", "final"]  # the stale preview never went
        assert scheduler.stats["dropped"] == 2
        assert api.flood.rejections == 0

    run(main())


def test_typing_goes_last_and_is_dropped_when_stale() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(), Api()
        for i in range(20):  # the typing budget: 20 in 5 s
            await call(scheduler, api, "sendMessageDraft", chat_id=1, draft_id=1, text=f"d{i}")
        typing = asyncio.ensure_future(
            call(scheduler, api, "sendChatAction", chat_id=1, action="typing")
        )
        await asyncio.sleep(0)
        with pytest.raises(Deferred):  # a draft waits too, but ahead of the typing action
            await call(scheduler, api, "sendMessageDraft", chat_id=1, draft_id=1, text="newest")
        with pytest.raises(Dropped):  # 3 s later "typing…" would be a lie: dropped
            await typing
        await settle(scheduler)
        assert api.texts(1)[-1] == "newest"
        assert "typing" not in api.texts(1)
        assert api.flood.rejections == 0

    run(main())


def test_after_a_429_only_that_chat_waits_and_its_answer_arrives_whole() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(), Api()
        api.ban(1, 5)
        texts = [f"piece {i}" for i in range(4)]

        async def answer() -> None:
            for text in texts:
                await call(scheduler, api, "sendMessage", chat_id=1, text=text)

        other = asyncio.ensure_future(call(scheduler, api, "sendMessage", chat_id=2, text="other"))
        await answer()
        await other
        assert api.texts(1) == texts
        assert api.violations == 0
        assert api.calls[0][1:] == ("sendMessage", {"chat_id": 2, "text": "other"})
        assert api.calls[0][0] < 1.0  # chat 2 did not wait for chat 1's ban
        assert api.calls[1][0] >= 5.0  # chat 1 did
        assert scheduler.stats["flood"] == 1 and scheduler.stats["flood_global"] == 0

    run(main())


def test_a_429_while_sending_at_the_global_rate_stops_every_chat() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(), Api()
        await asyncio.gather(
            *(call(scheduler, api, "sendMessage", chat_id=c, text="x") for c in range(1, 11))
        )
        api.ban(None, 3)  # the global window: the next call, whatever its chat, opens it
        first = asyncio.ensure_future(call(scheduler, api, "sendMessage", chat_id=11, text="y"))
        await asyncio.sleep(0.2)  # virtual time: that 429 has come back
        assert api.bans[None] > 0
        await asyncio.gather(
            first,
            *(call(scheduler, api, "sendMessage", chat_id=c, text="y") for c in range(12, 31)),
        )
        assert sum(len(api.texts(c)) for c in range(11, 31)) == 20
        assert api.violations == 0
        assert scheduler.stats["flood_global"] == 1
        assert min(t for t, _, d in api.calls if d["chat_id"] > 11) >= 3.0

    run(main())


def test_a_final_waits_out_a_long_ban_up_to_max_wait() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(Limits(max_wait=600)), Api()
        api.ban(1, 300)
        await call(scheduler, api, "sendMessage", chat_id=1, text="the answer")
        assert api.texts(1) == ["the answer"]
        assert api.calls[0][0] >= 300
        assert api.violations == 0

    run(main())


def test_past_max_wait_the_final_is_given_up_and_the_user_told_once_the_ban_ends() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(Limits(max_wait=10)), Api()
        api.ban(1, 60)
        for text in ("answer 1", "answer 2"):
            with pytest.raises(RetryAfter):
                await call(scheduler, api, "sendMessage", chat_id=1, text=text)
            scheduler.notify_after_ban(
                1, lambda: call(scheduler, api, "sendMessage", chat_id=1, text="lost, ask again")
            )
        await settle(scheduler)
        assert api.texts(1) == ["lost, ask again"]  # once, for both answers
        assert api.calls[0][0] >= 60
        assert api.violations == 0
        assert scheduler.stats["given_up"] == 2

    run(main())


def test_with_limits_off_nothing_is_paced_but_a_429_is_still_respected() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(Limits(enabled=False)), Api(FloodLimits())
        await asyncio.gather(
            *(call(scheduler, api, "sendMessage", chat_id=-5, text=str(i)) for i in range(40))
        )
        assert api.calls[-1][0] < 3.0  # one chat, one call in flight at a time, but no budget
        api.ban(-5, 4)
        await call(scheduler, api, "sendMessage", chat_id=-5, text="after the ban")
        assert api.texts(-5)[-1] == "after the ban"
        assert api.violations == 0

    run(main())


def test_a_cancelled_waiting_call_leaves_the_queue_clean() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(), Api()
        for i in range(2):
            await call(scheduler, api, "sendMessage", chat_id=1, text=str(i))
        waiting = asyncio.ensure_future(call(scheduler, api, "sendMessage", chat_id=1, text="x"))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await call(scheduler, api, "sendMessage", chat_id=1, text="next")
        assert api.texts(1) == ["0", "1", "next"]
        await settle(scheduler)
        assert scheduler._queued == 0

    run(main())


def test_calls_that_are_not_messages_pass_untouched() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(), Api()
        seen: list[str] = []

        async def get_me() -> dict[str, Any]:
            seen.append("getMe")
            return {}

        await scheduler.process_request(get_me, (), {}, "getMe", {}, None)
        assert seen == ["getMe"] and not scheduler._chats and not api.calls

    run(main())


def test_shutdown_stops_queued_previews_and_pending_notices() -> None:
    async def main() -> None:
        scheduler, api = Scheduler(Limits(max_wait=1)), Api()
        await call(scheduler, api, "sendMessage", chat_id=1, text="a")
        await call(scheduler, api, "editMessageText", "preview", chat_id=1, message_id=1, text="b")
        with pytest.raises(Deferred):
            await call(
                scheduler, api, "editMessageText", "preview", chat_id=1, message_id=1, text="c"
            )
        scheduler.notify_after_ban(
            1, lambda: call(scheduler, api, "sendMessage", chat_id=1, text="n")
        )
        await scheduler.shutdown()
        assert scheduler._dispatcher is None and not scheduler._tasks and not scheduler._queued

    run(main())
