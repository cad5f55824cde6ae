"""A fake OpenAI API server over real HTTP, for end-to-end tests and benchmarks.

The real ``openai.AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key)`` client talks to
it on 127.0.0.1: replies are scripted per endpoint (FIFO), errors and latency are injectable,
streams really stream over time, and every request is recorded for assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import random
import re
import shutil
import struct
import subprocess
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import BodyPartReader, web

__all__ = [
    "MAX_AUDIO_BYTES",
    "TINY_PNG",
    "ChatReply",
    "ErrorReply",
    "FakeOpenAI",
    "ImageReply",
    "Recorded",
    "ToolCall",
    "embed",
    "main",
    "sample_audio",
]

MAX_AUDIO_BYTES = 25 * 1024 * 1024
"""OpenAI's upload limit for /v1/audio/transcriptions; larger files get 413."""

_CLIENT_MAX_SIZE = 64 * 1024 * 1024  # JSON bodies (vision images) and uploads up to this are read
_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-image-1",
    "dall-e-3",
    "whisper-1",
    "tts-1",
    "text-embedding-3-small",
)
EMBEDDING_DIMENSIONS = 256
"""Length of the fake's embeddings unless a request asks for ``dimensions``."""
MAX_EMBEDDING_INPUTS = 2048
"""OpenAI's limit on the inputs of one /v1/embeddings request."""
MAX_EMBEDDING_TOKENS = 8192
"""OpenAI's limit on the tokens of one embedding input."""
_EMBED_WORDS = re.compile(r"\w+")
_AUTH_HELP = "You can find your API key at https://platform.openai.com/account/api-keys."
_JSON_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _png(width: int = 8, height: int = 8) -> bytes:
    """Build a valid RGB PNG (a small gradient) with zlib and struct only."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in (x * 32 % 256, y * 32 % 256, 160))
        for y in range(height)
    )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


TINY_PNG: bytes = _png()
"""A valid 8x8 RGB PNG: the default generated image."""
_TINY_PNG_B64 = base64.b64encode(TINY_PNG).decode()

# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, mono: 417-byte frames of silence (used without ffmpeg).
_MP3_SILENCE = (b"\xff\xfb\x90\xc0" + bytes(413)) * 10

# speech response_format -> (ffmpeg output arguments, content type)
_AUDIO_FORMATS: dict[str, tuple[tuple[str, ...], str]] = {
    "opus": (("-c:a", "libopus", "-f", "ogg"), "audio/ogg"),
    "mp3": (("-c:a", "libmp3lame", "-f", "mp3"), "audio/mpeg"),
    "aac": (("-c:a", "aac", "-f", "adts"), "audio/aac"),
    "flac": (("-c:a", "flac", "-f", "flac"), "audio/flac"),
    "wav": (("-c:a", "pcm_s16le", "-f", "wav"), "audio/wav"),
    "pcm": (("-ar", "24000", "-ac", "1", "-f", "s16le"), "audio/pcm"),
}
_audio_cache: dict[str, tuple[bytes, str]] = {}


def sample_audio(fmt: str = "opus") -> tuple[bytes, str]:
    """Return ``(bytes, content_type)`` of 0.5 s of real audio in a speech ``response_format``.

    Made once per process and format with ffmpeg (a 440 Hz sine); without ffmpeg, or for a format
    it cannot make, a few silent MP3 frames (``audio/mpeg``). Blocking on the first call.
    """
    cached = _audio_cache.get(fmt)
    if cached is not None:
        return cached
    result = (_MP3_SILENCE, "audio/mpeg")
    ffmpeg = shutil.which("ffmpeg")
    spec = _AUDIO_FORMATS.get(fmt)
    if ffmpeg and spec:
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi"]
        cmd += ["-i", "sine=frequency=440:duration=0.5", *spec[0], "pipe:1"]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            proc = subprocess.run(cmd, capture_output=True, timeout=30, check=True)
            if proc.stdout:
                result = (proc.stdout, spec[1])
    _audio_cache[fmt] = result
    return result


@dataclass
class ErrorReply:
    """An error answered in OpenAI's JSON error format, so the client raises the right class."""

    status: int = 500
    message: str = "The server had an error"
    type: str = "server_error"
    code: str | None = None
    retry_after: float | None = None
    """Sets the ``Retry-After`` header (seconds; the client honours 0 < value <= 60)."""
    hang: float | None = None
    """Instead of answering, wait this long (to trigger the client's timeout), then answer
    with ``status`` (500 by default)."""
    param: str | None = None

    @classmethod
    def rate_limit(cls, retry_after: float = 0) -> ErrorReply:
        """A 429 like OpenAI's requests-per-minute limit (``openai.RateLimitError``)."""
        return cls(
            status=429,
            message=(
                "Rate limit reached for requests in organization org-fake on requests per min "
                "(RPM): Limit 3, Used 3, Requested 1. Please try again later."
            ),
            type="requests",
            code="rate_limit_exceeded",
            retry_after=retry_after,
        )

    @classmethod
    def server_error(cls) -> ErrorReply:
        """A 500 like OpenAI's (``openai.InternalServerError``)."""
        return cls(
            message="The server had an error while processing your request. Sorry about that!",
        )

    @classmethod
    def content_policy(cls) -> ErrorReply:
        """A 400 safety-system rejection: ``BadRequestError``, code content_policy_violation."""
        return cls(
            status=400,
            message=(
                "Your request was rejected as a result of our safety system. Your prompt may "
                "contain text that is not allowed by our safety system."
            ),
            type="invalid_request_error",
            code="content_policy_violation",
        )

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI sends for this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass
class ToolCall:
    """A function call the assistant asks for; dict arguments are sent as JSON text."""

    name: str
    arguments: dict[str, Any] | str
    id: str | None = None


@dataclass
class ChatReply:
    """A scripted chat completion: text and/or tool calls, stream timing, or an error."""

    text: str = ""
    chunks: list[str] | None = None
    """Streaming: explicit content chunks (default: ``text`` split into ~4-word chunks)."""
    first_chunk_delay: float = 0.0
    """Streaming: seconds after the response headers before the first chunk."""
    chunk_delay: float = 0.0
    """Streaming: seconds between chunks (ignored when ``total_duration`` is set)."""
    tool_calls: list[ToolCall] | None = None
    finish_reason: str | None = None
    """Default "tool_calls" when there are tool calls, else "stop"."""
    error: ErrorReply | None = None
    drop_after_chunks: int | None = None
    """Streaming: abort the connection after this many chunks, never sending [DONE]."""
    cut_mid_line_after: int | None = None
    """Streaming: after this many chunks send the first half of the next ``data:`` line and end
    the body there, cleanly (no [DONE]): what a proxy or an overloaded server that gives up
    mid-event leaves the client."""
    usage: dict[str, Any] | None = None
    """Default: prompt ~ len(json(messages))//4, completion ~ len(text + arguments)//4."""
    total_duration: float | None = None
    """Streaming: the last chunk is sent this long after the headers; chunks after the first
    are spread evenly between ``first_chunk_delay`` and this."""
    reasoning: str = ""
    """A reasoning model's thinking, sent before ``text`` as ``reasoning_style`` says, and
    counted in ``usage.completion_tokens_details.reasoning_tokens`` (and completion_tokens)."""
    reasoning_style: Literal["reasoning_content", "reasoning", "think"] = "reasoning_content"
    """How the endpoint sends reasoning: a ``reasoning_content`` field next to ``content``
    (DeepSeek, vLLM), a ``reasoning`` field (OpenRouter), or inline at the start of the content
    as ``<think>…</think>`` (Qwen, DeepSeek-R1 served raw)."""
    reasoning_chunks: list[str] | None = None
    """Streaming: explicit reasoning chunks (default: ``reasoning`` split like ``text``)."""


@dataclass
class ImageReply:
    """A scripted image: an explicit URL, PNG bytes (served as URL or b64_json), or an error."""

    url: str | None = None
    b64_png: bytes | None = None
    revised_prompt: str | None = None
    error: ErrorReply | None = None


@dataclass
class Recorded:
    """One request as received: path, parsed body and lower-cased headers (key redacted)."""

    path: str
    json: dict[str, Any] | None
    form: dict[str, str]
    files: dict[str, bytes]
    headers: dict[str, str]
    """Lower-cased names; ``authorization`` is replaced by "<redacted>"."""
    time: float
    """``time.monotonic()`` when the request arrived (the same clock as asyncio's loop.time())."""
    method: str = "POST"
    authorized: bool = False
    """Whether it carried ``Authorization: Bearer <api_key>``."""
    filenames: dict[str, str] = field(default_factory=dict)
    """Multipart field name -> uploaded file name."""
    status: int = 0
    """HTTP status answered (0 while in flight or when the connection was dropped)."""


@dataclass
class _Fail:
    suffix: str
    error: ErrorReply
    remaining: int


@dataclass
class _RandomFail:
    suffix: str
    errors: tuple[ErrorReply, ...]
    rate: float
    rng: random.Random


_Handler = Callable[[web.Request, Recorded], Awaitable[web.StreamResponse]]
_WORDS = re.compile(r"\S+\s*|\s+")


def _split_chunks(text: str, words: int = 4) -> list[str]:
    """Split text into ~``words``-word pieces whose concatenation is exactly ``text``."""
    tokens = _WORDS.findall(text)
    if not tokens:
        return [text]
    return ["".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]


def _message_text(content: Any) -> str:
    """The text of a message content: a string, or the text parts of a list joined by spaces."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def embed(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The fake's embedding of a text: a unit vector of hashed lower-case words, deterministic,
    so texts that share words are near (cosine) and tests can predict the ranking."""
    vector = [0.0] * dimensions
    for word in _EMBED_WORDS.findall(text.lower()):
        digest = zlib.crc32(word.encode())
        vector[digest % dimensions] += 1.0 if digest & 0x8000_0000 else -1.0
    norm = sum(v * v for v in vector) ** 0.5
    if norm == 0:
        vector[0], norm = 1.0, 1.0
    return [v / norm for v in vector]


def _system_text(messages: Any) -> str:
    """The text of a request's system messages, joined."""
    return "\n".join(
        _message_text(m.get("content"))
        for m in (messages if isinstance(messages, list) else [])
        if isinstance(m, dict) and m.get("role") == "system"
    )


def _fragments(s: str, parts: int = 3) -> list[str]:
    """Split a string into up to ``parts`` non-empty pieces (streamed tool-call arguments)."""
    if not s:
        return []
    size = max(1, -(-len(s) // parts))
    return [s[i : i + size] for i in range(0, len(s), size)]


_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _check_tools(tools: Any) -> ErrorReply | None:
    """Refuse a ``tools`` list the real API would refuse (shape, function names)."""
    if tools is None:
        return None
    if not isinstance(tools, list) or not tools:
        return _invalid("Invalid 'tools': empty array. Expected an array with minimum length 1.")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type") != "function":
            return _invalid(f"Missing required parameter: 'tools[{i}].function'.", f"tools[{i}]")
        if not _FUNCTION_NAME.match(str(function.get("name", ""))):
            return _invalid(
                f"Invalid 'tools[{i}].function.name': string does not match pattern. Expected a "
                "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                f"tools[{i}].function.name",
                "invalid_value",
            )
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            return _invalid(f"Invalid 'tools[{i}].function.parameters'.", "parameters")
    return None


def _check_tool_messages(messages: list[Any]) -> ErrorReply | None:
    """Refuse a history the real API would refuse: every assistant ``tool_calls`` message must be
    followed by one tool message per call id, and a tool message must answer such a call."""
    pending: set[str] = set()
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role == "tool":
            if m.get("tool_call_id") not in pending:
                return _invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    f"messages.[{i}].role",
                )
            pending.discard(m["tool_call_id"])
            continue
        if pending:
            return _invalid(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(sorted(pending))}",
                f"messages.[{i}].role",
            )
        if role == "assistant" and m.get("tool_calls"):
            pending = {str(c.get("id")) for c in m["tool_calls"] if isinstance(c, dict)}
    if pending:
        return _invalid(
            "An assistant message with 'tool_calls' must be followed by tool messages responding "
            f"to each 'tool_call_id'. The following tool_call_ids did not have response "
            f"messages: {', '.join(sorted(pending))}",
            "messages",
        )
    return None


def _json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_JSON_DUMPS(data).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def _invalid(message: str, param: str | None = None, code: str | None = None) -> ErrorReply:
    return ErrorReply(400, message, "invalid_request_error", code=code, param=param)


class FakeOpenAI:
    """The fake server: start it, point ``openai.AsyncOpenAI`` at ``base_url``, script, assert.

    Attributes: ``api_key`` (requests without ``Authorization: Bearer <api_key>`` get 401),
    ``latency`` (seconds before every /v1 answer after the auth check, as set when the
    request arrived; for a stream, before the headers), ``default_chat`` (template for
    unscripted chat answers: its stream timing, and its text if non-empty instead of the echo),
    ``record`` (keep ``requests``; off for benchmarks).
    Unscripted defaults: chat echoes the last user message, images are ``TINY_PNG`` (b64_json or
    a URL served at ``/files/``), transcription is "transcript of N bytes", speech is
    ``sample_audio(response_format)``, embeddings are ``embedder(text, dimensions)``.
    """

    def __init__(self, *, api_key: str = "sk-test-key", record: bool = True) -> None:
        self.api_key = api_key
        self.record = record
        self.latency: float = 0.0
        self.default_chat = ChatReply()
        self.embedder: Callable[[str, int], list[float]] = embed
        """Makes /v1/embeddings' vectors: (text, dimensions) -> vector; replace it to make
        chosen texts near each other (a stand-in for a model's sense of meaning)."""
        self.requests: list[Recorded] = []
        self.port = 0
        self.url = ""
        self.base_url = ""
        self._chat: deque[ChatReply] = deque()
        self._chat_when: dict[str, deque[ChatReply]] = {}
        self._images: deque[ImageReply] = deque()
        self._transcriptions: deque[str | ErrorReply] = deque()
        self._speech: deque[bytes | ErrorReply] = deque()
        self._fails: list[_Fail] = []
        self._random_fails: list[_RandomFail] = []
        self._files: dict[str, bytes] = {}
        self._ids = itertools.count(1)
        self._inflight: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._routes: dict[tuple[str, str], _Handler] = {
            ("POST", "/v1/chat/completions"): self._chat_completions,
            ("POST", "/v1/images/generations"): self._image_generations,
            ("POST", "/v1/audio/transcriptions"): self._transcriptions_route,
            ("POST", "/v1/audio/speech"): self._speech_route,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("GET", "/v1/models"): self._models,
        }

    # --- lifecycle ---

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (0 picks a free port) and set ``port``, ``url``, ``base_url``."""
        app = web.Application(client_max_size=_CLIENT_MAX_SIZE)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        if ":" in url_host:
            url_host = f"[{url_host}]"
        self.url = f"http://{url_host}:{self.port}"
        self.base_url = f"{self.url}/v1"

    async def stop(self) -> None:
        """Stop listening; in-flight (hung or streaming) requests are cancelled, so it is prompt."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        current = asyncio.current_task()
        tasks = [t for t in self._inflight if t is not current and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- what was asked ---

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """JSON bodies sent to /v1/chat/completions, in order."""
        return [
            r.json for r in self.requests if r.path == "/v1/chat/completions" and r.json is not None
        ]

    def chat_times(self) -> list[dict[str, Any]]:
        """Every recorded chat request as {"time": arrival, "text": its last user message}: when
        each question reached the model, for benchmarks (``GET /_fake/chat_times``, ``--record``)."""
        times = []
        for r in self.requests:
            if r.path != "/v1/chat/completions" or r.json is None:
                continue
            users = [m for m in r.json.get("messages", []) if isinstance(m, dict)]
            users = [m for m in users if m.get("role") == "user"]
            text = _message_text(users[-1].get("content")) if users else ""
            times.append({"time": r.time, "text": text})
        return times

    def last_chat_messages(self) -> list[dict[str, Any]]:
        """The ``messages`` of the last chat request (AssertionError if there was none)."""
        chats = self.chat_requests
        assert chats, "no chat completion request was received"
        messages: list[dict[str, Any]] = chats[-1].get("messages", [])
        return messages

    def tool_messages(self, request: int = -1) -> dict[str, str]:
        """The tool results sent in a chat request (the last by default): {tool_call_id: content}."""
        chats = self.chat_requests
        assert chats, "no chat completion request was received"
        return {
            str(m.get("tool_call_id")): _message_text(m.get("content"))
            for m in chats[request].get("messages", [])
            if isinstance(m, dict) and m.get("role") == "tool"
        }

    async def wait_for_requests(
        self,
        path: str = "",
        *,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[Recorded]:
        """Wait until ``count`` requests whose path ends with ``path`` arrived; return them all."""
        deadline = time.monotonic() + timeout
        while True:
            hits = [r for r in self.requests if r.path.endswith(path)]
            if len(hits) >= count:
                return hits
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(hits)}/{count} requests to {path!r} in {timeout} s")
            await asyncio.sleep(0.01)

    def reset(self) -> None:
        """Forget recorded requests, scripted replies and pending failures."""
        self.requests.clear()
        for q in (self._chat, self._images, self._transcriptions, self._speech):
            q.clear()
        self._chat_when.clear()
        self._fails.clear()
        self._random_fails.clear()

    # --- scripting ---

    def script_chat(self, *replies: str | ChatReply, when: str | None = None) -> None:
        """Queue chat answers (a str is ``ChatReply(text=...)``), consumed one per request. With
        ``when``, only requests whose system messages contain that text take them, before any
        other queue: a plugin's side request (a summary, a title) is told by its prompt."""
        queue = self._chat if when is None else self._chat_when.setdefault(when, deque())
        queue.extend(ChatReply(text=r) if isinstance(r, str) else r for r in replies)

    def chat_requests_with(self, text: str) -> list[dict[str, Any]]:
        """The chat requests whose system messages contain ``text`` (a summary's prompt, say)."""
        return [body for body in self.chat_requests if text in _system_text(body.get("messages"))]

    def _scripted_chat(self, messages: list[Any]) -> ChatReply | None:
        system = _system_text(messages)
        for needle, queue in self._chat_when.items():
            if queue and needle in system:
                return queue.popleft()
        return self._chat.popleft() if self._chat else None

    def script_image(self, *replies: ImageReply) -> None:
        """Queue image answers, one per request (all ``n`` images of a request use it)."""
        self._images.extend(replies)

    def script_transcription(self, *texts: str | ErrorReply) -> None:
        """Queue transcription texts or errors, one per request."""
        self._transcriptions.extend(texts)

    def script_speech(self, *audio: bytes | ErrorReply) -> None:
        """Queue speech audio bytes or errors, one per request."""
        self._speech.extend(audio)

    def fail(self, path: str, error: ErrorReply, *, times: int = 1) -> None:
        """The next ``times`` requests whose path ends with ``path`` (e.g. "chat/completions")
        get ``error``, before any scripted reply is consumed."""
        self._fails.append(_Fail(path.strip("/"), error, times))

    def fail_randomly(
        self, path: str, *errors: ErrorReply, rate: float, seed: int | None = 0
    ) -> None:
        """From now on a share ``rate`` (0..1) of the requests whose path ends with ``path`` get
        one of ``errors`` (chosen at random; the default is ``ErrorReply.server_error()``).
        ``seed`` makes the sequence repeatable; ``rate=0`` stops it."""
        if not 0 <= rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        suffix = path.strip("/")
        self._random_fails = [f for f in self._random_fails if f.suffix != suffix]
        if rate > 0:
            choices = errors or (ErrorReply.server_error(),)
            self._random_fails.append(_RandomFail(suffix, choices, rate, random.Random(seed)))

    # --- request path ---

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            return await self._handle(request)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/_fake/chat_times":  # benchmarks, out of process: not recorded
            return _json_response({"ok": True, "result": self.chat_times()})
        headers = {k.lower(): v for k, v in request.headers.items()}
        auth = headers.pop("authorization", None)
        authorized = auth == f"Bearer {self.api_key}"
        if auth is not None:
            headers["authorization"] = "<redacted>"
        rec = Recorded(
            path=request.path,
            json=None,
            form={},
            files={},
            headers=headers,
            time=time.monotonic(),
            method=request.method,
            authorized=authorized,
        )
        latency = self.latency  # as it was when the request arrived: changing it later (once a
        # test saw this request in `requests`) must not shorten a wait already decided
        if self.record:
            self.requests.append(rec)
        resp = await self._answer(request, rec, auth, latency)
        rec.status = resp.status
        return resp

    async def _answer(
        self, request: web.Request, rec: Recorded, auth: str | None, latency: float
    ) -> web.StreamResponse:
        path = rec.path
        handler = self._routes.get((request.method, path))
        if handler is None:
            if request.method == "GET" and path.startswith("/files/"):
                return self._serve_file(path[len("/files/") :])
            if request.method == "GET" and path.startswith("/v1/models/"):
                handler = self._model
            else:
                await self._read_body(request, rec)  # recorded for debugging, errors ignored
                err = _invalid(f"Invalid URL ({request.method} {path})")
                return _json_response(err.body(), 404)
        bad = await self._read_body(request, rec)  # recorded even when unauthorized
        if not rec.authorized:
            if auth is None:
                message = (
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                    f"YOUR_KEY). {_AUTH_HELP}"
                )
                code = None
            else:  # never echo the (wrong) key back
                message, code = f"Incorrect API key provided. {_AUTH_HELP}", "invalid_api_key"
            err = ErrorReply(401, message, "invalid_request_error", code=code)
            return _json_response(err.body(), 401)
        if bad is not None:
            return await self._error(bad)
        for f in self._fails:
            if f.remaining > 0 and path.endswith(f.suffix):
                f.remaining -= 1
                if f.remaining <= 0:
                    self._fails.remove(f)
                if latency > 0:
                    await asyncio.sleep(latency)
                return await self._error(f.error)
        for r in self._random_fails:
            if path.endswith(r.suffix) and r.rng.random() < r.rate:
                error = r.rng.choice(r.errors)
                if latency > 0:
                    await asyncio.sleep(latency)
                return await self._error(error)
        if latency > 0:
            await asyncio.sleep(latency)
        return await handler(request, rec)

    async def _read_body(self, request: web.Request, rec: Recorded) -> ErrorReply | None:
        """Parse a JSON or multipart body into ``rec``; return an error to answer, if any."""
        if not request.body_exists:
            return None
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            try:
                return await self._read_multipart(request, rec)
            except Exception:  # a malformed form: answer like OpenAI instead of a bare 500
                return _invalid("Could not parse multipart form")
        raw = await request.read()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return _invalid(
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                "but what was sent was not valid JSON."
            )
        rec.json = data
        return None

    async def _read_multipart(self, request: web.Request, rec: Recorded) -> ErrorReply | None:
        reader = await request.multipart()
        total = 0
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.filename is None:
                rec.form[part.name] = await part.text()
                continue
            kept = bytearray()
            while chunk := await part.read_chunk(1 << 20):
                total += len(chunk)
                if len(kept) <= MAX_AUDIO_BYTES:
                    kept += chunk
                if total > _CLIENT_MAX_SIZE:
                    break
            rec.files[part.name] = bytes(kept)
            rec.filenames[part.name] = part.filename
            if total > _CLIENT_MAX_SIZE:
                break
        if total > MAX_AUDIO_BYTES:
            return ErrorReply(
                413,
                f"Maximum content size limit ({MAX_AUDIO_BYTES}) exceeded ({total} bytes read)",
                "invalid_request_error",
            )
        return None

    async def _error(self, err: ErrorReply) -> web.Response:
        if err.hang:
            await asyncio.sleep(err.hang)
        headers = None
        if err.retry_after is not None:
            ra = err.retry_after
            headers = {"Retry-After": str(int(ra)) if ra == int(ra) else str(ra)}
        return _json_response(err.body(), err.status, headers)

    def _request_id(self) -> dict[str, str]:
        return {"x-request-id": f"req_fake{next(self._ids)}"}

    # --- endpoints ---

    async def _chat_completions(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        body = rec.json or {}
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return await self._error(
                _invalid(
                    "Missing required parameter: 'messages'.",
                    "messages",
                    "missing_required_parameter",
                )
            )
        if not body.get("model"):
            return await self._error(_invalid("you must provide a model parameter"))
        invalid = _check_tools(body.get("tools")) or _check_tool_messages(messages)
        if invalid is not None:
            return await self._error(invalid)
        reply = self._scripted_chat(messages) or self._default_chat_reply(messages)
        if reply.error is not None:
            return await self._error(reply.error)

        n = next(self._ids)
        tool_calls = [
            (
                tc.id or f"call_fake{n}_{i}",
                tc.name,
                tc.arguments if isinstance(tc.arguments, str) else _JSON_DUMPS(tc.arguments),
            )
            for i, tc in enumerate(reply.tool_calls or [])
        ]
        finish = reply.finish_reason or ("tool_calls" if tool_calls else "stop")
        think = reply.reasoning_style == "think"
        text = f"<think>\n{reply.reasoning}\n</think>\n\n{reply.text}" if think else reply.text
        if think and not reply.reasoning:
            text = reply.text
        usage = reply.usage
        if usage is None:
            prompt = len(_JSON_DUMPS(messages)) // 4
            reasoning = len(reply.reasoning) // 4
            completion = (len(reply.text) + sum(len(a) for _, _, a in tool_calls)) // 4
            completion += reasoning  # reasoning tokens are billed as output (OpenAI, DeepSeek)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": reasoning,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            }
        head = {
            "id": f"chatcmpl-fake{n}",
            "created": int(time.time()),
            "model": str(body["model"]),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        if not body.get("stream"):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": text if text or not tool_calls else None,
                "refusal": None,
                "annotations": [],
            }
            if reply.reasoning and not think:
                message[reply.reasoning_style] = reply.reasoning
            if tool_calls:
                message["tool_calls"] = [
                    {"id": i, "type": "function", "function": {"name": nm, "arguments": a}}
                    for i, nm, a in tool_calls
                ]
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            data = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            return _json_response(data, headers=self._request_id())

        # -- streaming --
        deltas: list[dict[str, Any]] = []
        thoughts = reply.reasoning_chunks
        if thoughts is None:
            thoughts = _split_chunks(reply.reasoning) if reply.reasoning else []
        if think:  # the tags are part of the content, as a raw R1/Qwen endpoint sends them
            thoughts = ["<think>\n", *thoughts, "\n</think>\n\n"] if thoughts else []
            deltas += [{"content": p} for p in thoughts]
        else:  # content null beside the reasoning, as DeepSeek and vLLM stream it
            deltas += [{"content": None, reply.reasoning_style: p} for p in thoughts]
        if reply.text or reply.chunks or not tool_calls:
            pieces = reply.chunks if reply.chunks is not None else _split_chunks(reply.text)
            deltas += [{"content": p} for p in pieces]
        for idx, (cid, name, args) in enumerate(tool_calls):
            fn = {"name": name, "arguments": ""}
            deltas.append(
                {"tool_calls": [{"index": idx, "id": cid, "type": "function", "function": fn}]}
            )
            deltas += [
                {"tool_calls": [{"index": idx, "function": {"arguments": frag}}]}
                for frag in _fragments(args)
            ]
        if deltas:
            deltas[0] = {"role": "assistant", "content": None, **deltas[0]}
        else:
            deltas = [{"role": "assistant", "content": ""}]

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunk_head = {**head, "object": "chat.completion.chunk"}
        if include_usage:
            chunk_head["usage"] = None
        events = [
            {
                **chunk_head,
                "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}],
            }
            for d in deltas
        ]
        events.append(
            {
                **chunk_head,
                "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}],
            }
        )
        if include_usage:
            events.append({**chunk_head, "choices": [], "usage": usage})

        gaps = len(deltas) - 1
        between = reply.chunk_delay
        if reply.total_duration is not None and gaps > 0:
            between = max(0.0, reply.total_duration - reply.first_chunk_delay) / gaps

        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                **self._request_id(),
            }
        )
        await resp.prepare(request)
        drop = reply.drop_after_chunks
        for i, event in enumerate(events):
            delay = reply.first_chunk_delay if i == 0 else between if i < len(deltas) else 0.0
            if delay > 0:
                await asyncio.sleep(delay)
            if drop is not None and i >= drop:
                return self._abort(request, resp)
            if reply.cut_mid_line_after is not None and i >= reply.cut_mid_line_after:
                line = b"data: " + _JSON_DUMPS(event).encode()
                await resp.write(line[: len(line) // 2])
                await resp.write_eof()
                return resp
            await resp.write(b"data: " + _JSON_DUMPS(event).encode() + b"\n\n")
        if drop is not None:
            return self._abort(request, resp)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    @staticmethod
    def _abort(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
        """Close the connection mid-body, like a dropped stream."""
        if request.transport is not None:
            request.transport.abort()
        return resp

    def _default_chat_reply(self, messages: list[Any]) -> ChatReply:
        d = self.default_chat
        text = d.text
        if not text:
            last = next(
                (m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"),
                {},
            )
            text = "echo: " + _message_text(last.get("content"))
        return ChatReply(
            text=text,
            first_chunk_delay=d.first_chunk_delay,
            chunk_delay=d.chunk_delay,
            total_duration=d.total_duration,
        )

    async def _image_generations(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        body = rec.json or {}
        if not body.get("prompt"):
            return await self._error(
                _invalid(
                    "Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter"
                )
            )
        reply = self._images.popleft() if self._images else ImageReply()
        if reply.error is not None:
            return await self._error(reply.error)
        model = str(body.get("model") or "dall-e-2")
        gpt_image = model.startswith("gpt-image")
        want_b64 = gpt_image or body.get("response_format") == "b64_json"
        try:
            count = max(1, int(body.get("n") or 1))
        except (TypeError, ValueError):
            count = 1
        data: list[dict[str, Any]] = []
        for _ in range(count):
            item: dict[str, Any]
            if reply.url is not None:
                item = {"url": reply.url}
            elif want_b64:
                png = reply.b64_png
                item = {"b64_json": base64.b64encode(png).decode() if png else _TINY_PNG_B64}
            else:
                name = f"img-{next(self._ids)}.png"
                self._files[name] = reply.b64_png or TINY_PNG
                item = {"url": f"{self.url}/files/{name}"}
            if reply.revised_prompt is not None:
                item["revised_prompt"] = reply.revised_prompt
            data.append(item)
        result: dict[str, Any] = {"created": int(time.time()), "data": data}
        if gpt_image:
            result["output_format"] = "png"
            result["background"] = "opaque"
        return _json_response(result, headers=self._request_id())

    def _serve_file(self, name: str) -> web.Response:
        png = self._files.get(name)
        if png is None:
            err = _invalid(f"File {name!r} not found")
            return _json_response(err.body(), 404)
        return web.Response(body=png, content_type="image/png")

    async def _transcriptions_route(
        self, request: web.Request, rec: Recorded
    ) -> web.StreamResponse:
        audio = rec.files.get("file")
        if audio is None:
            return await self._error(_invalid("'file' is a required property", "file"))
        if not audio:
            return await self._error(
                _invalid(
                    "Audio file is too short. Minimum audio length is 0.1 seconds.",
                    "file",
                    "audio_too_short",
                )
            )
        reply = (
            self._transcriptions.popleft()
            if self._transcriptions
            else f"transcript of {len(audio)} bytes"
        )
        if isinstance(reply, ErrorReply):
            return await self._error(reply)
        fmt = rec.form.get("response_format", "json")
        if fmt == "text":
            return web.Response(text=reply, content_type="text/plain")
        if fmt == "srt":
            return web.Response(
                text=f"1\n00:00:00,000 --> 00:00:01,000\n{reply}\n\n", content_type="text/plain"
            )
        if fmt == "vtt":
            return web.Response(
                text=f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{reply}\n\n",
                content_type="text/plain",
            )
        data: dict[str, Any] = {"text": reply}
        if fmt == "verbose_json":
            segment = {
                "id": 0,
                "seek": 0,
                "start": 0.0,
                "end": 1.0,
                "text": reply,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": -0.1,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
            }
            language = rec.form.get("language", "english")
            data = {"task": "transcribe", "language": language, "duration": 1.0, **data}
            data["segments"] = [segment]
        return _json_response(data, headers=self._request_id())

    async def _speech_route(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        body = rec.json or {}
        if not body.get("model"):
            return await self._error(_invalid("you must provide a model parameter"))
        if not body.get("voice"):
            return await self._error(_invalid("'voice' is a required property", "voice"))
        text = body.get("input")
        if not isinstance(text, str) or not text:
            return await self._error(_invalid("'input' is a required property", "input"))
        if len(text) > 4096:
            return await self._error(
                _invalid(
                    "'input' is too long: at most 4096 characters",
                    "input",
                    "string_above_max_length",
                )
            )
        reply = self._speech.popleft() if self._speech else None
        if isinstance(reply, ErrorReply):
            return await self._error(reply)
        fmt = str(body.get("response_format") or "mp3")
        if reply is None:
            cached = _audio_cache.get(fmt)
            audio, ctype = cached if cached else await asyncio.to_thread(sample_audio, fmt)
        else:
            audio = reply
            ctype = _AUDIO_FORMATS[fmt][1] if fmt in _AUDIO_FORMATS else "application/octet-stream"
        return web.Response(body=audio, content_type=ctype, headers=self._request_id())

    async def _embeddings(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        """POST /v1/embeddings as OpenAI documents it: ``input`` a string or a list of strings
        (token arrays are accepted and embedded as their numbers), ``encoding_format`` "float"
        or "base64" (the SDK asks for base64 by default), optional ``dimensions``."""
        body = rec.json or {}
        if not body.get("model"):
            return await self._error(_invalid("you must provide a model parameter"))
        raw = body.get("input")
        if isinstance(raw, str) or (
            isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw)
        ):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            return await self._error(
                _invalid("'input' is a required property", "input", "missing_required_parameter")
            )
        if len(raw) > MAX_EMBEDDING_INPUTS:
            return await self._error(
                _invalid(
                    f"'$.input' is invalid: at most {MAX_EMBEDDING_INPUTS} inputs per request.",
                    "input",
                )
            )
        texts: list[str] = []
        for item in raw:
            if isinstance(item, list) and item and all(isinstance(t, int) for t in item):
                item = " ".join(map(str, item))
            if not isinstance(item, str) or not item:
                return await self._error(
                    _invalid("'$.input' is invalid. Please check the API reference.", "input")
                )
            if len(item) // 4 > MAX_EMBEDDING_TOKENS:
                return await self._error(
                    _invalid(
                        f"This model's maximum context length is {MAX_EMBEDDING_TOKENS} tokens, "
                        f"however you requested {len(item) // 4} tokens. Please reduce your "
                        "prompt.",
                        "input",
                    )
                )
            texts.append(item)
        dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
        if not isinstance(dimensions, int) or dimensions < 1:
            return await self._error(_invalid("Invalid 'dimensions'.", "dimensions"))
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = self.embedder(text, dimensions)
            encoded: Any = vector
            if as_base64:
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(max(1, len(text) // 4) for text in texts)
        result = {
            "object": "list",
            "data": data,
            "model": str(body["model"]),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return _json_response(result, headers=self._request_id())

    async def _models(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "system"}
            for m in _MODELS
        ]
        return _json_response({"object": "list", "data": data})

    async def _model(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        model = rec.path[len("/v1/models/") :]
        if model not in _MODELS:
            err = _invalid(
                f"The model '{model}' does not exist or you do not have access to it.",
                code="model_not_found",
            )
            return _json_response(err.body(), 404)
        return _json_response(
            {"id": model, "object": "model", "created": 1700000000, "owned_by": "system"}
        )


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeOpenAI(api_key=args.api_key, record=args.record)
    fake.latency = args.latency
    fake.default_chat = ChatReply(
        text=args.text,
        first_chunk_delay=args.stream_first,
        chunk_delay=args.chunk_delay,
        total_duration=args.stream_total,
    )
    await fake.start(args.host, args.port)
    print(f"fake OpenAI listening: base_url={fake.base_url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the fake standalone (for benchmarks) until interrupted."""
    p = argparse.ArgumentParser(prog="python -m botcore.testing.fake_openai", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8082, help="0 picks a free port")
    p.add_argument("--api-key", default="sk-test-key", help="the key clients must send")
    p.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    p.add_argument("--stream-first", type=float, default=0.0, help="seconds to the first chunk")
    p.add_argument("--stream-total", type=float, default=None, help="seconds to the last chunk")
    p.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks")
    p.add_argument("--text", default="", help="fixed chat answer instead of the echo")
    p.add_argument("--record", action="store_true", help="keep every request in memory")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
