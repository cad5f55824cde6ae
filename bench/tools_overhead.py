"""The CPU a turn costs the bot with 20 tools offered to the model, against none.

`python -m bench.tools_overhead [turns] [rounds]`: the real bot (`botcore run`, its own process)
answers `turns` private messages one after another through the fake Telegram and the fake OpenAI
(in this process, so they are not counted); the bot's CPU (user + system, from /proc) per turn is
measured for chat alone, for chat with 20 plugin tools, and for the same 20 behind a tool policy
that keeps half of them from ordinary users (the gate filters the offer every turn). The cases
take turns, `rounds` times, and the median is printed (a shared machine is noisy). A report, not
a test. This module is also the plugin that registers the 20 tools.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botcore
from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import API_KEY_VAR, TOKEN_VAR
from botcore.testing.toml_writer import to_toml

TOOLS = 20
ROOT = Path(__file__).resolve().parent.parent


def _tool(number: int) -> Callable[..., str]:
    def tool(city: str, days: int = 1) -> str:
        return f"{city}: sunny for {days} days"

    tool.__name__ = f"bench_forecast_{number}"
    tool.__doc__ = f"""Weather forecast number {number} for a city, a few days ahead.

    Args:
        city: The city, e.g. "Lisbon".
        days: How many days ahead, 1 to 7.
    """
    return tool


@botcore.hookimpl
def register_tools() -> list[Callable[..., str]]:
    return [_tool(number) for number in range(TOOLS)]


def _cpu(pid: int) -> float:
    """Seconds of CPU (user + system) process `pid` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(turns: int, plugins: list[str], tools: dict[str, Any]) -> tuple[float, int]:
    """The bot's CPU seconds per turn, and how many tools the last request offered."""
    with tempfile.TemporaryDirectory() as folder:
        async with FakeTelegram(limits=None) as telegram, FakeOpenAI(record=True) as openai:
            config: dict[str, Any] = {
                "bot": {
                    "token": f"${{{TOKEN_VAR}}}",
                    "plugins": plugins,
                    "base_url": telegram.base_url,
                    "base_file_url": telegram.base_file_url,
                    "poll_timeout": 5,
                    "log_level": "WARNING",
                    "limits": {"enabled": False},
                },
                "openai": {"api_key": f"${{{API_KEY_VAR}}}", "base_url": openai.base_url},
                "store": {"backend": "memory"},
                "plugins": {"chat": {"stream": False}},
                "tools": tools,
            }
            Path(folder, "bot.toml").write_text(to_toml(config), encoding="utf-8")  # noqa: ASYNC240
            env = {
                **os.environ,
                TOKEN_VAR: telegram.token,
                API_KEY_VAR: openai.api_key,
                "PYTHONPATH": str(ROOT),
            }
            bot = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "botcore", "run", "--config", "bot.toml",
                cwd=folder, env=env, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            try:
                for number in range(20):  # warm up: imports, first-use costs, connections
                    await telegram.reply_to(f"hello {number}", user_id=10_000 + number, timeout=60)
                start = _cpu(bot.pid)
                for number in range(turns):
                    await telegram.reply_to(f"question {number}", user_id=20_000 + number)
                used = _cpu(bot.pid) - start
                offered = len(openai.chat_requests[-1].get("tools", ()))
            finally:
                bot.terminate()
                await bot.wait()
    return used / turns, offered


def request_work(tools: int, policy: dict[str, Any], repeat: int = 20_000) -> float:
    """Seconds of what a request does with its tools, in this process: the definitions offered
    to the turn's sender (gate included) and the request body encoded as the bot sends it."""
    import time
    import types

    import orjson

    from botcore.gate import Gate, ToolsSettings
    from botcore.stores.memory import MemoryStore
    from botcore.tools import Tools, describe

    found = Tools([describe("bench", _tool(n)) for n in range(tools)])
    found.gate = Gate(ToolsSettings.model_validate(policy), MemoryStore())
    turn: Any = types.SimpleNamespace(chat_type="private", is_admin=False, sender_id=5)
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "hi"},
    ]
    start = time.process_time()
    for _ in range(repeat):
        body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": messages}
        if offered := found.definitions(turn):
            body["tools"] = offered
        orjson.dumps(body)
    return (time.process_time() - start) / repeat


async def main(turns: int, rounds: int) -> None:
    half = {f"bench_forecast_{n}": {"who": "admins"} for n in range(0, TOOLS, 2)}
    cases = [
        ("no tools", ["chat"], {}),
        (f"{TOOLS} tools", ["chat", "bench.tools_overhead"], {}),
        (f"{TOOLS} tools, half admin-only", ["chat", "bench.tools_overhead"], {"policy": half}),
    ]
    found: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    offers: dict[str, int] = {}
    for _ in range(rounds):
        for label, plugins, tools in cases:
            per_turn, offers[label] = await measure(turns, plugins, tools)
            found[label].append(per_turn)
    print("a request's tool work (offer, gate, JSON body), in-process:")
    for label, _, tools in cases:
        count = 0 if label == "no tools" else TOOLS
        print(f"  {label:32} {request_work(count, tools) * 1e6:6.1f} µs")
    print(f"bot CPU per turn, median of {rounds} rounds of {turns} turns (private, plain answers):")
    for label, runs in found.items():
        shown = " ".join(f"{run * 1e3:.2f}" for run in runs)
        print(
            f"  {label:32} {statistics.median(runs) * 1e3:6.2f} ms   "
            f"({offers[label]} tools in the request; rounds: {shown})"
        )


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*arguments, *(200, 3)[len(arguments) :]))
