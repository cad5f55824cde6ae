"""mcp: the tools of Model Context Protocol servers, offered to the chat model as `<server>_<tool>`.

Each `[plugins.mcp.servers.<name>]` table is a server: a command started with its arguments
(stdio) or a URL (streamable HTTP). At start-up every server is connected and its tools listed; a
server that cannot be reached is logged and tried again with back-off while the bot serves (unless
it is `required`: then the bot does not start). A connected server's list is read again every
`refresh_interval` seconds, which is also how a server that died is noticed, and at once when the
server says its tools changed (`notifications/tools/list_changed`; on protocol 2026-07-28 through
a `subscriptions/listen` stream); a call that finds the connection lost starts the reconnection
at once. The tools reach the core through a
`botcore.ToolSource`, so they are checked, timed out and scored like any plugin tool; whatever an
MCP server or its transport does wrong is told to the model, never a failed turn.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import sys
import weakref
from collections.abc import Sequence
from typing import Any

from pydantic import Field, field_validator, model_validator

from botcore import App, ConfigError, Reply, StrictModel, ToolSource, Turn, UserError, hookimpl

try:
    import httpx2

    from mcp import Client, StdioServerParameters, stdio_client
    from mcp import types as mcp_types
    from mcp.client.streamable_http import streamable_http_client
    from mcp.client.subscriptions import ListenNotSupportedError
    from mcp.shared.exceptions import MCPError
except ImportError as exc:  # pragma: no cover - the extra is part of the test environment
    raise ImportError(
        "the mcp plugin needs the MCP SDK: pip install 'botcore-framework[mcp]'"
    ) from exc

log = logging.getLogger(__name__)
SERVER_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,32}$")
"""A server's name prefixes its tools' names, which must stay within OpenAI's rule."""
_SOURCES: weakref.WeakKeyDictionary[App, McpTools] = weakref.WeakKeyDictionary()
"""Each running bot's source, for its startup and shutdown hooks."""


class Server(StrictModel):
    """[plugins.mcp.servers.<name>]: `command` (stdio) or `url` (streamable HTTP)."""

    command: str | None = None
    """The program that serves MCP on its stdin/stdout, e.g. "npx" or "uvx"."""
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    """Added to a minimal environment (PATH, HOME...): the bot's own secrets are not passed on."""
    cwd: str | None = None
    url: str | None = None
    """The server's streamable HTTP endpoint, e.g. "https://example.com/mcp"."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Sent with every request, e.g. {Authorization = "Bearer ${MCP_TOKEN}"}."""
    required: bool = False
    """True: a server that cannot be reached at start-up stops start-up (exit 2)."""
    connect_timeout: float = Field(10, gt=0, le=300)
    """Seconds to start or reach the server and list its tools."""
    call_timeout: float | None = Field(None, gt=0, le=3600)
    """Seconds one tool call may take here; the chat plugin's tool_timeout applies anyway."""

    @model_validator(mode="after")
    def _one_transport(self) -> Server:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (stdio) or url (streamable HTTP)")
        if self.url is not None:
            if self.args or self.env or self.cwd:
                raise ValueError("args, env and cwd go with command, not url")
            if not self.url.startswith(("http://", "https://")):
                raise ValueError("url must start with http:// or https://")
        elif self.headers:
            raise ValueError("headers go with url, not command")
        return self

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"


class Settings(StrictModel):
    """[plugins.mcp]"""

    servers: dict[str, Server] = Field(default_factory=dict)
    refresh_interval: float = Field(30, gt=0, le=3600)
    """Seconds between readings of a connected server's tool list (a dead server shows then)."""
    retry_max: float = Field(60, gt=0, le=3600)
    """The longest wait between attempts to reach a server (1, 2, 4... seconds up to this)."""

    @field_validator("servers")
    @classmethod
    def _names(cls, servers: dict[str, Server]) -> dict[str, Server]:
        for name in servers:
            if not SERVER_NAME.match(name):
                raise ValueError(f"server name {name!r}: 1-32 of a-z, A-Z, 0-9, _ and -")
        return servers


class Lost(Exception):
    """The connection to a server is gone (noticed by a call or by a reading of its list)."""


class Connection:
    """One server: a task that connects, lists, watches and reconnects, and the tools it offers."""

    def __init__(self, name: str, server: Server, settings: Settings, changed: Any) -> None:
        self.name = name
        self.server = server
        self.settings = settings
        self.changed = changed
        """Called when the tools change (connected, re-listed, lost)."""
        self.client: Client | None = None
        self.tools: list[dict[str, Any]] = []
        """Their definitions, named `<server>_<tool>`."""
        self.names: dict[str, str] = {}
        """`<server>_<tool>` -> the server's name for the tool."""
        self.error: str | None = None
        """Why the server is not connected (the last failure), if it is not."""
        self.attempted = asyncio.Event()
        """Set once the first attempt to connect is over, whatever came of it."""
        self._wake = asyncio.Event()
        self._lost: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"mcp:{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def probe(self) -> list[str]:
        """Connect once, list the tools and close (for `botcore plugins`): their names."""
        async with (
            contextlib.AsyncExitStack() as stack,
            asyncio.timeout(self.server.connect_timeout),
        ):
            client = await self._open(stack)
            return [tool.name for tool in await _list(client)]

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Call one tool; every failure is a UserError for the model, naming the server."""
        client = self.client
        if client is None:
            raise UserError(f"the MCP server {self.name} is not connected right now ({self.error})")
        try:
            result = await client.call_tool(
                tool, arguments, read_timeout_seconds=self.server.call_timeout
            )
        except MCPError as exc:
            if exc.code == mcp_types.CONNECTION_CLOSED:
                self.lose("the connection was closed")
                raise UserError(
                    f"the MCP server {self.name} is not reachable right now: its connection was "
                    "lost (reconnecting)"
                ) from None
            raise UserError(f"the MCP server {self.name} refused the call: {exc.message}") from None
        except Exception as exc:  # the transport's: the server is gone or answers nonsense
            self.lose(f"{type(exc).__name__} in a call")
            raise UserError(
                f"the MCP server {self.name} is not reachable right now ({type(exc).__name__})"
            ) from None
        text = _text(result)
        if result.is_error:
            raise UserError(f"{self.name}_{tool} failed: {text}")
        return text

    def lose(self, why: str) -> None:
        """The connection is gone: the server's task drops it and reconnects."""
        if self.client is not None and self._lost is None:
            self._lost = why
            self._wake.set()

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                async with contextlib.AsyncExitStack() as stack:
                    async with asyncio.timeout(self.server.connect_timeout):
                        client = await self._open(stack)
                        self._offer(await _list(client))
                    self.client, self.error, self._lost = client, None, None
                    delay = 1.0
                    log.info("mcp: server %s connected: %s tools", self.name, len(self.tools))
                    self.attempted.set()
                    await self._watch(client)
            except asyncio.CancelledError:
                if self._stopping:
                    raise
                self.error = "the connection was cancelled"
            except Exception as exc:
                self.error = _reason(exc)
            finally:
                self.client = None
                self._offer([])
            self.attempted.set()
            log.warning(
                "mcp: server %s (%s) unavailable: %s; trying again in %g s",
                self.name,
                self.server.transport,
                self.error,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.retry_max)

    async def _open(self, stack: contextlib.AsyncExitStack) -> Client:
        """Start or reach the server and complete the handshake; closed with `stack`."""
        info = mcp_types.Implementation(name="botcore", version="1")
        server = self.server
        if server.url is not None:
            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers=server.headers,
                    timeout=httpx2.Timeout(server.connect_timeout, read=server.call_timeout or 300),
                )
            )
            client = Client(
                streamable_http_client(server.url, http_client=http),
                client_info=info,
                message_handler=self._notified,
            )
        else:
            assert server.command is not None
            params = StdioServerParameters(
                command=server.command, args=server.args, env=server.env or None, cwd=server.cwd
            )
            # The server's stderr goes where the bot's own log does: the process's real stderr
            # (sys.stderr may be a replacement without a file descriptor, as under pytest).
            errlog = sys.__stderr__ or sys.stderr
            client = Client(
                stdio_client(params, errlog=errlog),
                client_info=info,
                message_handler=self._notified,
            )
        return await stack.enter_async_context(client)

    async def _watch(self, client: Client) -> None:
        """Read the list again now and then, and when the server says it changed, until the
        connection is found lost."""
        listening = asyncio.get_running_loop().create_task(self._listen(client))
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.refresh_interval):
                        await self._wake.wait()
                self._wake.clear()
                if self._lost is not None:
                    raise Lost(self._lost)
                async with asyncio.timeout(self.server.connect_timeout):
                    self._offer(await _list(client))
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening

    async def _notified(self, message: object) -> None:
        """The session's notifications: a changed tool list is read again at once."""
        if isinstance(message, mcp_types.ToolListChangedNotification):
            log.info("mcp: server %s says its tools changed; reading them again", self.name)
            self._wake.set()

    async def _listen(self, client: Client) -> None:
        """On protocol 2026-07-28 a server tells of changes only to a `subscriptions/listen`
        stream: hold one open (its events reach `_notified` too). Older servers send the
        notification unasked; a stream that breaks leaves the periodic reading."""
        tools = client.server_capabilities.tools if client.server_capabilities else None
        if tools is None or not tools.list_changed:
            return
        try:
            async with client.listen(tools_list_changed=True) as events:
                async for _ in events:
                    self._wake.set()
        except ListenNotSupportedError:
            return
        except Exception as exc:
            log.debug("mcp: server %s: no change notifications: %s", self.name, _reason(exc))

    def _offer(self, tools: Sequence[mcp_types.Tool]) -> None:
        definitions: list[dict[str, Any]] = []
        names: dict[str, str] = {}
        for tool in tools:
            name = f"{self.name}_{tool.name}"
            schema = dict(tool.input_schema)
            schema.pop("$schema", None)
            schema.pop("title", None)
            function: dict[str, Any] = {"name": name, "parameters": schema}
            description = tool.description or tool.title
            if description:
                function["description"] = description
            definitions.append({"type": "function", "function": function})
            names[name] = tool.name
        if definitions != self.tools:  # an unchanged list keeps its identity: checked once
            self.tools, self.names = definitions, names
            self.changed()


class McpTools(ToolSource):
    """Every configured server's tools, as one ToolSource of the mcp plugin."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connections = {
            name: Connection(name, server, settings, self._changed)
            for name, server in settings.servers.items()
        }
        self._definitions: list[dict[str, Any]] = []
        self._route: dict[str, tuple[Connection, str]] = {}
        self.started = False

    def definitions(self) -> list[dict[str, Any]]:
        return self._definitions

    async def call(self, turn: Turn, name: str, arguments: dict[str, Any]) -> str | Reply:
        found = self._route.get(name)
        if found is None:  # its server went away since the model was offered it
            raise UserError(f"the tool {name} is not available right now")
        connection, tool = found
        return await connection.call(tool, arguments)

    async def describe(self) -> list[str]:
        lines = []
        for name, connection in self.connections.items():
            where = f"server {name} ({connection.server.transport})"
            try:
                tools = await connection.probe()
            except Exception as exc:
                lines.append(f"{where}: cannot connect: {_reason(exc)}")
            else:
                lines.append(f"{where}: {', '.join(tools) or 'no tools'}")
        return lines

    async def start(self) -> None:
        """Connect every server; wait for each one's first attempt. A required server that
        failed it is a StartupError naming it; the others go on trying in the background."""
        self.started = True
        for connection in self.connections.values():
            connection.start()
        await asyncio.gather(*(c.attempted.wait() for c in self.connections.values()))
        for name, connection in self.connections.items():
            if connection.client is None and connection.server.required:
                raise ConfigError(
                    f"plugins.mcp.servers.{name}: required, and cannot be reached: "
                    f"{connection.error}"
                )

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.connections.values()))

    def _changed(self) -> None:
        self._definitions = [d for c in self.connections.values() for d in c.tools]
        self._route = {
            name: (c, tool) for c in self.connections.values() for name, tool in c.names.items()
        }


async def _list(client: Client) -> list[mcp_types.Tool]:
    """Every tool of a server, page by page, read afresh."""
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a server whose pages never end cannot hang us
        page = await client.list_tools(cursor=cursor, cache_mode="refresh")
        tools += page.tools
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _text(result: mcp_types.CallToolResult) -> str:
    """What the model reads of a tool's result: its text; other content described."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
            kind = "image" if isinstance(block, mcp_types.ImageContent) else "audio"
            parts.append(
                f"[{kind} {block.mime_type}, {_size(block.data)} bytes: tool {kind}s are not "
                "shown to the model]"
            )
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, mcp_types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(
                    f"[resource {resource.uri} ({resource.mime_type or 'binary'}), "
                    f"{_size(resource.blob)} bytes]"
                )
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource link {block.uri}: {block.description or block.name}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    return "\n".join(parts) or ("failed" if result.is_error else "Done.")


def _size(data: str) -> int:
    """The decoded size of base64 `data`."""
    with contextlib.suppress(ValueError):
        return len(base64.b64decode(data, validate=False))
    return len(data) * 3 // 4


def _reason(exc: BaseException) -> str:
    """One line on why a connection failed: the innermost error of an exception group (anyio's
    task groups wrap the transport's), never a header's value."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@hookimpl
def settings_model() -> type[Settings]:
    return Settings


@hookimpl
def register_tools(app: App) -> Sequence[ToolSource]:
    source = _SOURCES[app] = McpTools(app.settings(Settings))
    return [source]


@hookimpl
async def startup(app: App) -> None:
    source = _SOURCES.get(app)
    if source is not None:
        await source.start()


@hookimpl
async def shutdown(app: App) -> None:
    source = _SOURCES.pop(app, None)
    if source is not None:
        await source.stop()
