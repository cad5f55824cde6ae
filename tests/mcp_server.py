"""A small MCP server for tests/test_mcp.py, written with the official SDK as an operator's would be.

`python mcp_server.py stdio` serves on stdin/stdout; `python mcp_server.py http PORT` serves
streamable HTTP on 127.0.0.1:PORT/mcp. With PIDFILE set, it writes its process id there first (a
test kills it mid-run).
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys

from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
server = MCPServer("testserver")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@server.tool()
def secret() -> str:
    """The value of the SECRET environment variable the server was started with."""
    return os.environ.get("SECRET", "(none)")


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ToolError(f"cannot do it: {reason}")


@server.tool()
def picture() -> Image:
    """A tiny PNG."""
    return Image(data=PNG, format="png")


@server.tool()
async def slow(seconds: float) -> str:
    """Answer after a while."""
    await asyncio.sleep(seconds)
    return "finally"


@server.tool()
async def grow(ctx: Context) -> str:
    """Add the tool `double` now and tell the client its tool list changed."""

    def double(x: int) -> int:
        """Twice a whole number."""
        return 2 * x

    server.add_tool(double, name="double")
    await ctx.notify_tools_changed()
    return "grown"


def main() -> None:
    pidfile = os.environ.get("PIDFILE")
    if pidfile:
        with open(pidfile, "w") as f:
            f.write(str(os.getpid()))
    if sys.argv[1] == "stdio":
        server.run()
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))


if __name__ == "__main__":
    main()
