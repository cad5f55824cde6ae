"""An aiohttp transport for python-telegram-bot: the httpx stack costs several times the CPU per
request under load (measured in bench/), and the Bot API is most of what a bot does."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import httpx
from aiohttp.helpers import get_env_proxy_for_url
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import JSONDict
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, HTTPXRequest, RequestData
from yarl import URL

Proxy = tuple[URL | None, aiohttp.BasicAuth | None]


class NotBotApi(NetworkError):
    """The server answered, but not as a Telegram Bot API server does (an HTML page, an empty
    body): bot.base_url points elsewhere, or a proxy answered for it. At start-up it stops the
    bot; later it is a network error like any other (retried)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}, and not a Telegram Bot API answer")
        self.status = status


class MaybeSent(TimedOut):
    """The request reached Telegram but its answer did not come within the read timeout: Telegram
    may well have acted on it. For a call that creates something (a message) that is not retried:
    sending it again could show it twice. Other calls time out as TimedOut, and are retried."""

    def __init__(self, method: str) -> None:
        super().__init__(f"Telegram did not answer {method} in time; it may have been done")
        self.method = method


_REPEATABLE = frozenset({"sendChatAction", "sendMessageDraft"})
"""Calls named like a send that are safe to make twice (the second replaces the first)."""


def creates(url: str) -> str | None:
    """The Bot API method of `url` if calling it twice would create two things, else None."""
    method = url.rpartition("/")[2]
    if method.startswith(("send", "copy", "forward", "create")) and method not in _REPEATABLE:
        return method
    return None


def check_answer(status: int, body: bytes) -> None:
    """Raise NotBotApi for an error status without a Bot API error object (`{"ok": false, ...}`):
    python-telegram-bot would log the body with a JSON traceback and, for 401 or 404, call the
    token invalid."""
    if status < 300:
        return
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not (isinstance(data, dict) and "ok" in data):
        raise NotBotApi(status)


def parse_answer(payload: bytes) -> JSONDict:
    """A Bot API answer as JSON; NotBotApi (not a logged traceback) if it is none."""
    try:
        data = json.loads(payload.decode("utf-8", "replace"))
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise NotBotApi(200)
    return data


class CheckedHTTPXRequest(HTTPXRequest):
    """python-telegram-bot's own httpx transport (bot.http_client = "httpx"), with answers that
    are not the Bot API's reported as NotBotApi, as the aiohttp transport does."""

    __slots__ = ()

    async def do_request(self, url: str, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        """Send one request (see HTTPXRequest.do_request)."""
        try:
            status, body = await super().do_request(url, *args, **kwargs)
        except TimedOut as exc:
            created = creates(url)
            if created is not None and isinstance(exc.__cause__, httpx.ReadTimeout):
                raise MaybeSent(created) from None
            raise
        check_answer(status, body)
        return status, body

    @staticmethod
    def parse_json_payload(payload: bytes) -> JSONDict:
        """See `parse_answer`."""
        return parse_answer(payload)


class EnvProxies:
    """The proxy from HTTP(S)_PROXY / NO_PROXY for each origin, looked up once: aiohttp's
    `trust_env` looks it up (and reads ~/.netrc) on a worker thread for every request."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, str | None, int | None], Proxy] = {}

    async def get(self, url: str | URL) -> Proxy:
        """(proxy, proxy auth) for requests to `url`; (None, None) for a direct connection."""
        parsed = URL(url)
        key = (parsed.scheme, parsed.host, parsed.port)
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = await asyncio.to_thread(_env_proxy, parsed)
        return found


def _env_proxy(url: URL) -> Proxy:
    try:
        return get_env_proxy_for_url(url)
    except LookupError:
        return None, None


class AiohttpRequest(BaseRequest):
    """python-telegram-bot's BaseRequest over one shared aiohttp session."""

    __slots__ = (
        "_connect",
        "_limit",
        "_media_write",
        "_proxies",
        "_read",
        "_session",
        "_write",
        "last_ok",
    )

    def __init__(
        self,
        *,
        connection_limit: int = 256,
        read_timeout: float = 5.0,
        write_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        media_write_timeout: float = 20.0,
    ) -> None:
        self._limit = connection_limit
        self._read = read_timeout
        self._write = write_timeout
        self._connect = connect_timeout
        self._media_write = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self.last_ok: float | None = None
        """time.monotonic() of the last 200 answer (the health check reads it)."""
        self._proxies = EnvProxies()

    @property
    def read_timeout(self) -> float:
        """The default read timeout; getUpdates adds its long-poll timeout to it."""
        return self._read

    async def initialize(self) -> None:
        """Open the session (idempotent)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector)

    async def shutdown(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send one Bot API request: JSON normally, multipart when it uploads files."""
        if self._session is None:
            raise RuntimeError("AiohttpRequest is not initialized")
        files = request_data is not None and request_data.contains_files
        read = self._read if isinstance(read_timeout, DefaultValue) else read_timeout
        connect = self._connect if isinstance(connect_timeout, DefaultValue) else connect_timeout
        write_default = self._media_write if files else self._write
        write = write_default if isinstance(write_timeout, DefaultValue) else write_timeout
        # aiohttp has no separate write timeout: the whole request may take write + read.
        total = None if read is None or write is None else read + write + (connect or 0)
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=connect, sock_read=read)
        headers = {"User-Agent": self.USER_AGENT}
        body: Any = None
        if request_data is not None:
            if files:
                body = aiohttp.FormData(quote_fields=False)
                for name, value in request_data.json_parameters.items():
                    body.add_field(name, value)
                for name, (filename, content, *rest) in request_data.multipart_data.items():
                    mimetype = rest[0] if rest else None
                    body.add_field(name, content, filename=filename, content_type=mimetype)
            else:
                # Real JSON (nested objects), not PTB's form fields of JSON-encoded strings.
                body = json.dumps(request_data.parameters, ensure_ascii=False).encode()
                headers["Content-Type"] = "application/json"
        try:
            proxy, proxy_auth = await self._proxies.get(url)
            async with self._session.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=timeout,
                proxy=proxy,
                proxy_auth=proxy_auth,
            ) as response:
                status, answer = response.status, await response.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            # Only sock_read means the request went out whole (the total timeout also covers
            # waiting for a free connection, when nothing was sent).
            created = creates(url) if isinstance(exc, aiohttp.SocketTimeoutError) else None
            if created is not None:
                raise MaybeSent(created) from None
            raise TimedOut from exc
        except (aiohttp.ClientError, ValueError) as exc:  # ValueError: yarl refused the URL
            # The URL holds the bot token: keep it out of the message (and so out of any log).
            reason = str(exc).replace(url, "<Bot API URL>")
            raise NetworkError(f"{type(exc).__name__}: {reason}") from None
        if status == 200:
            self.last_ok = time.monotonic()
        else:
            check_answer(status, answer)
        return status, answer

    @staticmethod
    def parse_json_payload(payload: bytes) -> JSONDict:
        """See `parse_answer`."""
        return parse_answer(payload)
