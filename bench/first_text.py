"""Time to first visible text with streaming on vs off (`python -m bench.first_text`).

The fake model's answer starts after 0.3 s and ends after 3.0 s (non-streamed: arrives whole at
3.0 s). The bot runs in-process with history and chat; ten users ask one after another.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from botcore.testing.fake_openai import ChatReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness


async def measure(stream: bool) -> list[float]:
    async with FakeTelegram() as tg, FakeOpenAI() as oai:
        oai.default_chat = ChatReply(first_chunk_delay=0.3, total_duration=3.0, text="word " * 60)
        oai.latency = 0.0 if stream else 3.0  # a complete answer takes the whole 3 s
        os.chdir(tempfile.mkdtemp())
        h = BotHarness(tg, oai, Path("."))
        await h.start(
            ["history", "chat"],
            settings={"chat": {"stream": stream}},
            bot={"stream_edit_interval": 0.8},
        )
        times = []
        for i in range(10):
            t0 = time.monotonic()
            chat = 1000 + i
            await tg.send_message(f"q{i}", user_id=chat)
            # A draft is visible text too (private answers stream as drafts).
            await tg.wait_for(lambda: bool(tg.drafts(chat) or tg.messages.get(chat)), timeout=10)  # noqa: B023
            times.append(time.monotonic() - t0)
        await h.stop_all()
        return times


async def main() -> None:
    for stream in (True, False):
        t = await measure(stream)
        print(
            f"stream={stream}: first visible text median {statistics.median(t):.3f} s, max {max(t):.3f} s"
        )


if __name__ == "__main__":
    asyncio.run(main())
