"""The overhead of an MCP tool round trip (stdio, streamable HTTP) against a plugin tool.

`python -m bench.mcp_overhead [calls]`: the same `add(a, b)` tool, called through botcore's tool
path (argument parsing, timeout, result text) as a plugin function and as the tool of
tests/mcp_server.py over stdio and over HTTP on loopback, one call at a time. A report, not a
test: it prints the median and p90 per call, and the CPU both processes spent.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from botcore_mcp import McpTools, Settings

from botcore.tools import _call_source, describe

SERVER = Path(__file__).resolve().parent.parent / "tests" / "mcp_server.py"
ARGS = '{"a": 2, "b": 40}'


def add(a: int, b: int) -> int:
    """Add two whole numbers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


async def add_async(a: int, b: int) -> int:
    """Add two whole numbers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


async def timed(label: str, calls: int, once: Any) -> None:
    for _ in range(20):  # warm up
        await once()
    took: list[float] = []
    cpu = time.process_time()
    for _ in range(calls):
        start = time.perf_counter()
        await once()
        took.append(time.perf_counter() - start)
    cpu = time.process_time() - cpu
    took.sort()
    print(
        f"{label:28} median {statistics.median(took) * 1e6:9.1f} µs   "
        f"p90 {took[int(len(took) * 0.9)] * 1e6:9.1f} µs   bot CPU/call {cpu / calls * 1e6:8.1f} µs"
    )


async def main(calls: int) -> None:
    turn: Any = None  # the success path reads nothing of the turn
    sync_tool, async_tool = describe("bench", add), describe("bench", add_async)
    await timed("plugin tool (thread)", calls, lambda: sync_tool.call(turn, ARGS, timeout=30))
    await timed("plugin tool (async def)", calls, lambda: async_tool.call(turn, ARGS, timeout=30))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVER), "http", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.sleep(2)  # uvicorn's start-up
        source = McpTools(
            Settings.model_validate(
                {
                    "servers": {
                        "io": {"command": sys.executable, "args": [str(SERVER), "stdio"]},
                        "web": {"url": f"http://127.0.0.1:{port}/mcp"},
                    },
                    "refresh_interval": 3600,
                }
            )
        )
        await source.start()
        try:
            for name, label in (
                ("io_add", "MCP tool over stdio"),
                ("web_add", "MCP tool over HTTP"),
            ):
                result = await _call_source("bench", source, turn, name, ARGS, 30)
                assert result.content == "42", result
                await timed(
                    label,
                    calls,
                    lambda name=name: _call_source("mcp", source, turn, name, ARGS, 30),
                )
        finally:
            await source.stop()
    finally:
        http.kill()
        await http.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
