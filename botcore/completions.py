"""POST /chat/completions on the bot's own aiohttp session: the SDK's headers, retries and error
classes, but chunks parsed with `json` into attribute dicts instead of the SDK's pydantic objects,
which cost more CPU per answer than everything else a turn does (bench/).

`Completions.create` returns what `client.chat.completions.create` would, read the same way
(`chunk.choices[0].delta.content`, `response.choices[0].message.content`; a field the server
left out reads None). With `bot.http_client = "httpx"` it goes through the SDK itself.

An answer never imports the SDK (~0.5 s of CPU, the largest part of a start-up): the endpoint
and headers come from [openai] as the SDK would read them, and the SDK client is built only to
turn a failure into its exception, or for `http_client = "httpx"`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from botcore.transport import EnvProxies, Proxy

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from botcore.config import OpenAISettings

log = logging.getLogger(__name__)

INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 120.0
"""The SDK honours a server's Retry-After up to two minutes, and gives up beyond it."""
_TEXTS = ("content", "reasoning_content", "reasoning")
"""Delta fields of text: the answer, and a reasoning model's thinking (DeepSeek/vLLM, OpenRouter)."""
_MERGEABLE = frozenset({*_TEXTS, "role"})
SDK_BASE_URL = "https://api.openai.com/v1"
"""Where the SDK sends requests when neither [openai] base_url nor OPENAI_BASE_URL says."""


@dataclass(frozen=True)
class Endpoint:
    """Where chat completions go and what the SDK client would send with them."""

    url: str
    """The full URL of POST /chat/completions."""
    headers: dict[str, str] = field(repr=False)
    """Auth and the SDK's identification headers (they hold the API key: never logged)."""
    timeout: float
    """Seconds to connect, and between reads (the SDK's `timeout` as a number)."""
    max_retries: int

    @classmethod
    def from_settings(cls, settings: OpenAISettings) -> Endpoint:
        """[openai], read as `AsyncOpenAI(api_key=..., base_url=...)` reads it, environment
        fallbacks included, without importing the SDK."""
        assert settings.api_key is not None
        base = settings.base_url or os.environ.get("OPENAI_BASE_URL") or SDK_BASE_URL
        try:
            version = metadata.version("openai")
        except metadata.PackageNotFoundError:  # pragma: no cover - a dependency of botcore
            version = "unknown"
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": f"AsyncOpenAI/Python {version}",
            "X-Stainless-Lang": "python",
            "X-Stainless-Package-Version": version,
            "X-Stainless-Runtime": platform.python_implementation(),
            "X-Stainless-Runtime-Version": platform.python_version(),
            "X-Stainless-Async": "async:asyncio",
            "Authorization": f"Bearer {settings.api_key.get_secret_value()}",
        }
        for header, variable in (
            ("OpenAI-Organization", "OPENAI_ORG_ID"),
            ("OpenAI-Project", "OPENAI_PROJECT_ID"),
        ):
            if value := os.environ.get(variable):
                headers[header] = value
        return cls(
            f"{base.rstrip('/')}/chat/completions",
            headers,
            settings.timeout,
            settings.max_retries,
        )

    @classmethod
    def of(cls, client: AsyncOpenAI) -> Endpoint:
        """The endpoint of an SDK client that already exists (its headers may read files:
        call it off the event loop)."""
        headers = {**client.default_headers, **client.auth_headers}
        timeout: Any = client.timeout  # a number, or an httpx Timeout
        return cls(
            f"{client.base_url}chat/completions",
            {k: v for k, v in headers.items() if isinstance(v, str)},
            float(getattr(timeout, "read", timeout)),
            client.max_retries,
        )


class Data(dict[str, Any]):
    """A JSON object whose keys also read as attributes; a missing key reads None, as an unset
    optional field of the SDK's models does."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return self.get(name)

    def model_dump(self, *, exclude_none: bool = False, **_: Any) -> dict[str, Any]:
        """A plain dict, like the SDK model's `model_dump` (so callers work with either)."""
        plain: dict[str, Any] = _plain(self, exclude_none)
        return plain


def _plain(value: Any, exclude_none: bool) -> Any:
    if isinstance(value, dict):
        return {
            k: _plain(v, exclude_none) for k, v in value.items() if not (exclude_none and v is None)
        }
    if isinstance(value, list):
        return [_plain(v, exclude_none) for v in value]
    return value


def loads(data: bytes | str) -> Any:
    """JSON with every object as `Data`."""
    return json.loads(data, object_pairs_hook=Data)


class Completions:
    """Chat completions for one bot on `endpoint`; `sdk` builds (or returns) the SDK client,
    which only failures and `use_aiohttp=False` need. `open` starts the aiohttp session (else
    the first request does, once however many turns arrive together), `close` ends it."""

    def __init__(
        self, endpoint: Endpoint, sdk: Callable[[], AsyncOpenAI], *, use_aiohttp: bool = True
    ) -> None:
        self.endpoint = endpoint
        self._sdk = sdk
        self.use_aiohttp = use_aiohttp
        self._session: aiohttp.ClientSession | None = None
        self._opening = asyncio.Lock()
        """Held while the session opens, so concurrent first calls share one session."""
        self._headers = endpoint.headers
        self._url = endpoint.url
        self._proxy: Proxy = (None, None)

    @classmethod
    def for_client(cls, client: AsyncOpenAI, *, use_aiohttp: bool = True) -> Completions:
        """Chat completions on an SDK client's endpoint and settings."""
        return cls(Endpoint.of(client), lambda: client, use_aiohttp=use_aiohttp)

    @property
    def client(self) -> AsyncOpenAI:
        """The SDK client (built on first use: importing the SDK takes ~0.5 s)."""
        return self._sdk()

    @property
    def max_retries(self) -> int:
        """How often a failed request is tried again ([openai] max_retries): a stream broken
        before its first text may be asked again as often."""
        return self.endpoint.max_retries

    async def open(self) -> None:
        """Start the session before the first request, so that no answer waits for it."""
        if self.use_aiohttp:
            await self._opened()

    async def create(self, body: dict[str, Any], *, stream: bool) -> Any:
        """The completion (`stream=False`) or an async iterator of chunks (`stream=True`); raises
        the SDK's exceptions (openai.APIStatusError subclasses, APITimeoutError...) after the
        SDK's retries."""
        if stream:
            body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        if not self.use_aiohttp:
            return await self._create_sdk(body, stream=stream)
        response = await self._post(body)
        if not stream:
            try:
                data = await response.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise self._connection_error(exc) from exc
            finally:
                response.release()
            try:
                return loads(data)
            except json.JSONDecodeError as exc:
                raise self._invalid(exc) from exc
        return ChunkStream(self, response)

    async def close(self) -> None:
        """Close the session (the SDK client is closed by its owner); an opening in progress
        finishes first, so the session it makes is closed too."""
        async with self._opening:
            session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _create_sdk(self, body: dict[str, Any], *, stream: bool) -> Any:
        """Through the SDK's own post(): the same retries, errors and stream parsing as
        `chat.completions.create`, without its type transform of the whole history."""
        from openai import AsyncStream
        from openai.types.chat import ChatCompletion, ChatCompletionChunk

        try:
            result = await self.client.post(
                "/chat/completions",
                body=body,
                cast_to=ChatCompletion,
                stream=stream,
                stream_cls=AsyncStream[ChatCompletionChunk],
            )
        except json.JSONDecodeError as exc:
            raise self._invalid(exc) from exc
        return _CheckedStream(self, result) if stream else result

    async def _opened(self) -> aiohttp.ClientSession:
        """The session; the first caller opens it and callers arriving meanwhile wait for that
        one (a failed or cancelled opening leaves the next caller to try again)."""
        session = self._session
        if session is not None:
            return session
        async with self._opening:
            if self._session is None:
                self._session = await self._open()
            return self._session

    async def _open(self) -> aiohttp.ClientSession:
        self._proxy = await EnvProxies().get(self._url)
        timeout = self.endpoint.timeout
        # Made after the last await: a cancelled opening leaves no session behind.
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
        )

    async def _post(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """Send with the SDK's retry policy; a 2xx response is returned unread."""
        session = await self._opened()
        data = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)  # ~30x json.dumps
        max_retries = self.endpoint.max_retries
        for retries_taken in range(max_retries + 1):
            remaining = max_retries - retries_taken
            headers = {**self._headers, "x-stainless-retry-count": str(retries_taken)}
            try:
                response = await session.post(
                    self._url,
                    data=data,
                    headers=headers,
                    proxy=self._proxy[0],
                    proxy_auth=self._proxy[1],
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                log.debug("chat/completions: %s", type(exc).__name__)
                if remaining > 0:
                    await asyncio.sleep(self._backoff(retries_taken, None))
                    continue
                raise self._connection_error(exc) from exc
            if response.status < 400:
                return response
            try:
                content = await response.read()
            except (TimeoutError, aiohttp.ClientError):
                content = b""
            finally:
                response.release()
            error = self._http_response(response, content)
            if remaining > 0 and self.client._should_retry(error):
                await asyncio.sleep(self._backoff(retries_taken, error.headers))
                continue
            raise self.client._make_status_error_from_response(error) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, retries_taken: int, headers: Any) -> float:
        """The SDK's wait before a retry: the server's Retry-After, else exponential with jitter."""
        if headers is not None:
            after = self.client._parse_retry_after_header(headers)
            if after is not None and 0 < after <= MAX_RETRY_AFTER:
                return float(after)
        delay = min(INITIAL_RETRY_DELAY * 2.0**retries_taken, MAX_RETRY_DELAY)
        return delay * (1 - 0.25 * random.random())

    def _request(self) -> Any:
        """An SDK-side request object for the exceptions (only built on the error path)."""
        return _httpx().Request("POST", self._url)

    def _http_response(self, response: aiohttp.ClientResponse, content: bytes) -> Any:
        return _httpx().Response(
            response.status,
            headers=list(response.headers.items()),
            content=content,
            request=self._request(),
        )

    def _connection_error(self, exc: BaseException) -> Exception:
        import openai

        if isinstance(exc, TimeoutError):
            return openai.APITimeoutError(request=self._request())
        return openai.APIConnectionError(request=self._request())

    def _cut(self) -> Exception:
        """A stream whose body ended before the answer did (mid-event, or with no finish
        reason): the endpoint's fault, raised as the SDK raises a dropped connection."""
        import openai

        return openai.APIConnectionError(
            message="The answer stream ended before the answer did.", request=self._request()
        )

    def _invalid(self, exc: json.JSONDecodeError) -> Exception:
        """A body that is not JSON: the endpoint's fault (an API error for the user), never a
        bug of the plugin that asked (a bare JSONDecodeError would count against its breaker)."""
        import openai

        log.debug("chat/completions: invalid JSON: %s", exc.msg)
        response = _httpx().Response(200, request=self._request())
        return openai.APIResponseValidationError(
            response, None, message="The endpoint answered with invalid JSON."
        )


def _httpx() -> Any:
    """The httpx package the installed SDK is built on (httpx, or httpx2 in newer releases)."""
    # The package first: while the runner's thread imports the SDK, this waits for it. Asking
    # for the submodule first would hold its import lock while that thread needs it, and
    # Python's deadlock avoidance would hand one side a half-initialised module.
    import openai  # noqa: F401
    import openai._base_client as base

    return getattr(base, "httpx2", None) or getattr(base, "httpx")  # noqa: B009


class ChunkStream:
    """The chunks of a streamed completion, parsed as they arrive.

    Text deltas that arrived together are merged into one chunk (as if the server had sent one
    larger chunk): a consumer then does its per-chunk work (a preview edit, a render) once per
    network read, not once per token. Chunks with tool calls, a finish reason or usage pass as they are.
    """

    def __init__(self, owner: Completions, response: aiohttp.ClientResponse) -> None:
        self._owner = owner
        self._response = response
        self._reader = response.content
        self._chunks: deque[Data] = deque()
        self._pending = b""
        self._data: list[bytes] = []
        self._done = False
        self._finished = False
        """A choice has had its finish reason: the answer is whole even without [DONE]."""

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> Data:
        while not self._chunks:
            if self._done:
                await self.close()
                raise StopAsyncIteration
            await self._read()
        chunk = self._chunks.popleft()
        while self._chunks and _merge(chunk, self._chunks[0]):
            self._chunks.popleft()
        return chunk

    async def _read(self) -> None:
        try:
            data = await self._reader.readany()
        except (TimeoutError, aiohttp.ClientError) as exc:
            await self.close()
            raise self._owner._connection_error(exc) from exc
        if not data:  # the body ended (without [DONE])
            # An unfinished event is discarded (as the SSE spec says); it, or an answer with no
            # finish reason, means the answer was cut: an endpoint fault, said as one.
            cut = bool(self._pending.strip() or self._data) or not self._finished
            self._done = True
            await self.close()
            if cut:
                raise self._owner._cut()
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        """Split Server-Sent Events into lines; every blank line ends an event."""
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            line = line.removesuffix(b"\r")
            if not line:
                if self._data:
                    self._event(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                self._data.append(line[6:] if line[5:6] == b" " else line[5:])
            # "event:", "id:", "retry:" and ":" comments carry nothing a chat completion uses

    def _event(self, data: bytes) -> None:
        if self._done:
            return
        if data.startswith(b"[DONE]"):
            self._done = True  # the rest of the body is drained by close()
            return
        try:
            chunk = loads(data)
        except json.JSONDecodeError as exc:
            raise self._owner._invalid(exc) from exc
        if isinstance(chunk, dict) and chunk.get("error"):
            import openai

            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else None
            raise openai.APIError(
                message
                if isinstance(message, str) and message
                else "An error occurred during streaming",
                self._owner._request(),
                body=error,
            )
        if not self._finished and _finishes(chunk):
            self._finished = True
        self._chunks.append(chunk)

    async def close(self) -> None:
        """Release the response: a finished body is read to its end, so the connection is
        reused; an abandoned one (a cancelled answer) drops the connection at once rather than
        wait for the rest of an answer nobody reads."""
        response = self._response
        if response.closed:
            return
        if not self._done:
            self._done = True
            response.close()
            return
        try:
            if not self._reader.at_eof():
                await self._reader.read()
        except (TimeoutError, aiohttp.ClientError):
            response.close()
        finally:
            response.release()

    aclose = close


def _finishes(chunk: Any) -> bool:
    """Whether a chunk (a Data or the SDK's model) gives a choice its finish reason."""
    return any(getattr(c, "finish_reason", None) for c in getattr(chunk, "choices", None) or ())


class _CheckedStream:
    """The SDK's stream (``http_client = "httpx"``) with the endpoint faults ChunkStream raises:
    invalid JSON and a body that ends before the answer (the SDK drops an unfinished event
    and ends quietly, which would pass a cut answer off as whole)."""

    def __init__(self, owner: Completions, stream: Any) -> None:
        self._owner = owner
        self._stream = stream
        self._iterator = stream.__aiter__()
        self._finished = False

    def __aiter__(self) -> _CheckedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._iterator.__anext__()
        except StopAsyncIteration:
            if not self._finished:
                raise self._owner._cut() from None
            raise
        except json.JSONDecodeError as exc:
            await self.close()
            raise self._owner._invalid(exc) from exc
        if not self._finished and _finishes(chunk):
            self._finished = True
        return chunk

    async def close(self) -> None:
        await self._stream.close()

    aclose = close


def _merge(chunk: Data, following: Data) -> bool:
    """Append `following`'s text to `chunk` when both carry only text of the same kind (answer
    or reasoning) for choice 0."""
    choices, more = chunk.get("choices"), following.get("choices")
    if not (choices and more and len(choices) == 1 and len(more) == 1):
        return False
    first, second = choices[0], more[0]
    if first.get("finish_reason") is not None or first.get("index") != second.get("index"):
        return False
    delta, extra = first.get("delta"), second.get("delta")
    if not (isinstance(delta, dict) and isinstance(extra, dict)):
        return False
    if not (delta.keys() <= _MERGEABLE and extra.keys() <= _MERGEABLE):
        return False
    if first.get("logprobs") or second.get("logprobs"):
        return False
    carried = [name for name in _TEXTS if extra.get(name)]
    if carried and carried != [name for name in _TEXTS if delta.get(name)]:
        return False  # reasoning then answer stay two chunks: their order is the reader's
    for name in carried:
        delta[name] = (delta.get(name) or "") + extra[name]
    if "role" in extra and "role" not in delta:
        delta["role"] = extra["role"]
    first["finish_reason"] = second.get("finish_reason")
    if following.get("usage") is not None:
        chunk["usage"] = following["usage"]
    return True
