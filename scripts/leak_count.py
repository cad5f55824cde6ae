"""Count resource-leak lines in the log of a real `botcore run` cold-started with a backlog.

    .venv/bin/python scripts/leak_count.py [--updates 50] [--code OTHER_CHECKOUT]

Starts the kit's fake Telegram and fake OpenAI in this process, queues N messages from N users
(so N turns run at once), spawns `python -m botcore run` on them, waits for N answers, stops the
bot with SIGTERM and prints the count of leak lines in its stderr (see botcore.testing.leaks).
Exit status 1 if any. `--code` runs the bot on another checkout's botcore package (put first
on the bot's PYTHONPATH), e.g. an export of main to count before a fix.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from pathlib import Path

from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness
from botcore.testing.leaks import leak_lines


async def cold_start_log(updates: int, workdir: Path, code: Path | None = None) -> str:
    """The bot's stderr from start to SIGTERM, `updates` messages waiting when it starts."""
    telegram, openai = FakeTelegram(), FakeOpenAI()
    await telegram.start()
    await openai.start()
    harness = BotHarness(telegram, openai, workdir)
    try:
        for user in range(1, updates + 1):
            await telegram.send_message(f"question {user}", user_id=1000 + user)
        harness.write_config(plugins=["chat"])
        log = (workdir / "bot.log").open("wb")
        with log:
            env = harness.env() if code is None else harness.env(PYTHONPATH=str(code))
            bot = await harness.spawn(stderr=log, env=env)
            try:
                await telegram.wait_for(
                    lambda: telegram.chat_summary(detail=False)["answers"] >= updates,
                    timeout=60,
                    poll_interval=0.2,
                )
            finally:
                if bot.returncode is None:
                    bot.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(bot.wait(), 30)
        return (workdir / "bot.log").read_text(encoding="utf-8", errors="replace")
    finally:
        await harness.stop_all()
        await openai.stop()
        await telegram.stop()


def main() -> None:
    """Run once and print the count."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--show", action="store_true", help="print the leak lines too")
    parser.add_argument("--code", type=Path, help="a checkout whose botcore the bot runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text = asyncio.run(cold_start_log(args.updates, Path(tmp), args.code))
    found = leak_lines(text)
    if args.show:
        for line in found:
            print(line)
    print(f"{len(found)} leak lines in the log of a cold start with {args.updates} updates waiting")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
