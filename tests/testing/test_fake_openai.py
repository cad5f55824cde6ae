"""The fake OpenAI server, driven through real HTTP by the real ``openai.AsyncOpenAI`` client."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from botcore.testing.fake_openai import (
    MAX_AUDIO_BYTES,
    TINY_PNG,
    ChatReply,
    ErrorReply,
    FakeOpenAI,
    ImageReply,
    ToolCall,
)

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    c = AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0)
    yield c
    await c.close()


def check_png(data: bytes) -> tuple[int, int]:
    """Parse a PNG: verify signature, every chunk's CRC and the pixel data; return its size."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, tags, idat = 8, [], b""
    width = height = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == crc
        if tag == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert (depth, color) == (8, 2)
        idat += body if tag == b"IDAT" else b""
        tags.append(tag)
        pos += 12 + length
    assert tags[0] == b"IHDR" and tags[-1] == b"IEND"
    assert len(zlib.decompress(idat)) == height * (1 + width * 3)
    return width, height


async def collect(stream: Any) -> list[tuple[float, Any]]:
    """Drain a chat stream, stamping each chunk with its arrival time."""
    return [(time.monotonic(), chunk) async for chunk in stream]


# --- basics: URLs, auth, models, 404, recording ---


async def test_urls_models_and_recording(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    assert fake.base_url == f"http://127.0.0.1:{fake.port}/v1" and fake.port > 0
    models = await client.models.list()
    assert "gpt-4o" in [m.id for m in models.data]
    assert (await client.models.retrieve("whisper-1")).id == "whisper-1"
    with pytest.raises(openai.NotFoundError) as exc:
        await client.models.retrieve("gpt-99")
    assert exc.value.code == "model_not_found"
    rec = fake.requests[0]
    assert (rec.method, rec.path, rec.status, rec.authorized) == ("GET", "/v1/models", 200, True)
    assert rec.headers["authorization"] == "<redacted>"
    assert rec.headers["x-stainless-retry-count"] == "0"
    assert fake.api_key not in repr(fake.requests)


async def test_wrong_or_missing_key_is_401_without_leaking_it(fake: FakeOpenAI) -> None:
    bad = AsyncOpenAI(base_url=fake.base_url, api_key="sk-wrong-secret", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        await bad.chat.completions.create(model="gpt-4o", messages=USER)
    await bad.close()
    assert exc.value.status_code == 401 and exc.value.code == "invalid_api_key"
    assert "sk-wrong-secret" not in exc.value.message
    rejected = fake.requests[-1]
    assert (rejected.authorized, rejected.status) == (False, 401)
    assert rejected.headers["authorization"] == "<redacted>"
    assert fake.last_chat_messages() == USER  # recorded even though it was rejected

    async with aiohttp.ClientSession() as http, http.get(f"{fake.base_url}/models") as resp:
        body = await resp.json()
    assert resp.status == 401
    assert body["error"]["type"] == "invalid_request_error"
    assert "didn't provide an API key" in body["error"]["message"]


async def test_unknown_path_is_404_in_openai_format(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.post("/no/such/thing", cast_to=object, body={"x": 1})
    assert fake.requests[-1].json == {"x": 1}
    async with aiohttp.ClientSession() as http, http.get(f"{fake.url}/v1/nope") as resp:
        body = await resp.json()
    assert resp.status == 404
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"] == "Invalid URL (GET /v1/nope)"


# --- chat ---


async def test_chat_default_echo_and_recording(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "look"}, {"type": "text", "text": "here"}],
        },
    ]
    r = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert r.object == "chat.completion" and r.model == "gpt-4o-mini" and r.id
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "echo: look here"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.prompt_tokens == len(json.dumps(messages, separators=(",", ":"))) // 4
    assert r.usage.completion_tokens == len("echo: look here") // 4
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert fake.last_chat_messages() == messages
    assert fake.chat_requests == [{"model": "gpt-4o-mini", "messages": messages}]


async def test_chat_script_is_fifo_then_default(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script_chat(
        "first",
        ChatReply(
            text="second", usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        ),
    )
    answers = []
    for _ in range(3):
        r = await client.chat.completions.create(model="gpt-4o", messages=USER)
        answers.append(r.choices[0].message.content)
    assert answers == ["first", "second", "echo: hello there"]
    assert len(fake.chat_requests) == 3


async def test_stream_chunks_roles_usage_and_done(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    text = "one two three four five six seven eight nine"
    fake.script_chat(text)
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c for _, c in await collect(stream)]
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-4o" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert contents == ["one two three four ", "five six seven eight ", "nine"]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text) // 4

    # The raw wire format: SSE data lines ending with [DONE], no usage chunk unless asked.
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    payload = {"model": "m", "messages": USER, "stream": True}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{fake.base_url}/chat/completions", json=payload, headers=headers) as resp,
    ):
        raw = (await resp.read()).decode()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "stop"


async def test_stream_is_really_spread_over_time(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script_chat(
        ChatReply(chunks=["a", "b", "c", "d"], first_chunk_delay=0.3, total_duration=0.9),
        ChatReply(text="x y z w v", chunks=["x ", "y"], chunk_delay=0.25),
    )
    start = time.monotonic()
    stream = await client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    stamped = [(t - start, c) for t, c in await collect(stream)]
    content = [(t, c.choices[0].delta.content) for t, c in stamped if c.choices[0].delta.content]
    assert [s for _, s in content] == ["a", "b", "c", "d"]
    # Due at 0.3, 0.5, 0.7, 0.9 s: a loaded machine can only make a chunk late, never early, so
    # each chunk is checked against its own due time (spread out, not sent in one burst).
    times = [t for t, _ in content]
    assert all(t >= due - 0.02 for t, due in zip(times, (0.3, 0.5, 0.7, 0.9), strict=True))
    assert times[-1] < 10  # and not held back until some unrelated timeout

    start = time.monotonic()
    stream = await client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    stamped = [(t - start, c) for t, c in await collect(stream)]
    assert stamped[1][0] - stamped[0][0] >= 0.24
    assert "".join(c.choices[0].delta.content or "" for _, c in stamped) == "x y"


async def test_latency_delays_every_answer(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.latency = 0.25
    start = time.monotonic()
    await client.chat.completions.create(model="gpt-4o", messages=USER)
    assert time.monotonic() - start >= 0.24
    start = time.monotonic()
    stream = await client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    first = (await collect(stream))[0][0]
    assert first - start >= 0.24


async def test_tool_calls_non_streamed(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script_chat(
        ChatReply(
            tool_calls=[
                ToolCall("get_weather", {"city": "Paris"}),
                ToolCall("search", '{"q": "x"}', id="call_abc"),
            ]
        )
    )
    r = await client.chat.completions.create(model="gpt-4o", messages=USER)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "search"]  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert calls[1].id == "call_abc" and calls[0].id and calls[0].id != calls[1].id
    assert all(c.type == "function" for c in calls)


async def test_tool_calls_streamed_in_fragments(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    args = {"city": "Paris", "unit": "celsius", "days": 3}
    fake.script_chat(ChatReply(tool_calls=[ToolCall("a", args), ToolCall("b", {"n": 1}, "id_b")]))
    stream = await client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    chunks = [c for _, c in await collect(stream)]
    assert chunks[0].choices[0].delta.role == "assistant"
    acc: dict[int, dict[str, str]] = {}
    fragments = 0
    for c in chunks:
        for tc in c.choices[0].delta.tool_calls or []:
            slot = acc.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += tc.id or ""
            if tc.function is not None:
                slot["name"] += tc.function.name or ""
                slot["arguments"] += tc.function.arguments or ""
                fragments += tc.index == 0 and bool(tc.function.arguments)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert [acc[i]["name"] for i in sorted(acc)] == ["a", "b"]
    assert json.loads(acc[0]["arguments"]) == args and json.loads(acc[1]["arguments"]) == {"n": 1}
    assert acc[1]["id"] == "id_b" and acc[0]["id"]
    assert fragments > 1


WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def test_tool_results_are_recorded_for_assertions(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.script_chat(ChatReply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, "c1")]))
    first = await client.chat.completions.create(
        model="gpt-4o", messages=USER, tools=[WEATHER_TOOL]
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    messages: list[Any] = [
        *USER,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "-3 C, snow"},
    ]
    fake.script_chat("Cold: -3 C and snow.")
    second = await client.chat.completions.create(
        model="gpt-4o", messages=messages, tools=[WEATHER_TOOL]
    )
    assert second.choices[0].message.content == "Cold: -3 C and snow."
    assert fake.tool_messages() == {"c1": "-3 C, snow"}
    assert fake.tool_messages(0) == {}
    assert fake.chat_requests[0]["tools"] == [WEATHER_TOOL]


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (  # a call without its result
            [
                *USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "user", "content": "and?"},
            ],
            "messages.[2].role",
        ),
        (  # a result without its call
            [*USER, {"role": "tool", "tool_call_id": "c9", "content": "x"}],
            "messages.[1].role",
        ),
    ],
    ids=["call-without-result", "result-without-call"],
)
async def test_an_invalid_tool_exchange_is_refused_like_the_real_api(
    fake: FakeOpenAI, client: AsyncOpenAI, messages: list[Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        await client.chat.completions.create(model="gpt-4o", messages=messages)
    assert exc.value.status_code == 400
    assert isinstance(exc.value.body, dict) and exc.value.body["param"] == param


async def test_a_bad_tool_name_is_refused(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    bad: Any = {"type": "function", "function": {"name": "get weather", "parameters": {}}}
    with pytest.raises(openai.BadRequestError) as exc:
        await client.chat.completions.create(model="gpt-4o", messages=USER, tools=[bad])
    assert exc.value.code == "invalid_value"


@pytest.mark.parametrize(
    ("error", "exc_class", "status", "code"),
    [
        (ErrorReply.rate_limit(retry_after=2), openai.RateLimitError, 429, "rate_limit_exceeded"),
        (ErrorReply.server_error(), openai.InternalServerError, 500, None),
        (ErrorReply.content_policy(), openai.BadRequestError, 400, "content_policy_violation"),
        (ErrorReply(status=503, message="overloaded"), openai.InternalServerError, 503, None),
    ],
)
async def test_chat_errors_raise_the_right_class(
    fake: FakeOpenAI,
    client: AsyncOpenAI,
    error: ErrorReply,
    exc_class: type[openai.APIStatusError],
    status: int,
    code: str | None,
) -> None:
    fake.script_chat(ChatReply(error=error))
    with pytest.raises(exc_class) as exc:
        await client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    assert exc.value.status_code == status and exc.value.code == code
    assert exc.value.message.endswith(error.message)
    if error.retry_after is not None:
        assert exc.value.response.headers["retry-after"] == "2"
    # The error consumed the scripted reply: the next request gets the default.
    r = await client.chat.completions.create(model="gpt-4o", messages=USER)
    assert r.choices[0].message.content == "echo: hello there"


async def test_hang_triggers_client_timeout(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script_chat(ChatReply(error=ErrorReply(hang=5)))
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=0.3).chat.completions.create(
            model="gpt-4o",
            messages=USER,
        )
    assert time.monotonic() - start < 2


async def test_fail_comes_before_script_and_retries_honour_retry_after(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.script_chat("scripted")
    fake.fail("chat/completions", ErrorReply.server_error())
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="gpt-4o", messages=USER)
    r = await client.chat.completions.create(model="gpt-4o", messages=USER)
    assert r.choices[0].message.content == "scripted"

    fake.requests.clear()
    fake.fail("/v1/chat/completions", ErrorReply.rate_limit(retry_after=1.0), times=2)
    retrying = client.with_options(max_retries=2)
    start = time.monotonic()
    r = await retrying.chat.completions.create(model="gpt-4o", messages=USER)
    # The client waited Retry-After twice (2 s); its own backoff would total at most 1.5 s. A
    # lower bound, so a loaded machine cannot fail it.
    assert time.monotonic() - start >= 1.95
    assert r.choices[0].message.content == "echo: hello there"
    assert [q.status for q in fake.requests] == [429, 429, 200]
    assert [q.headers["x-stainless-retry-count"] for q in fake.requests] == ["0", "1", "2"]


async def test_dropped_stream_raises_connection_error(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.script_chat(ChatReply(text="a b c d e f g h i j k l", drop_after_chunks=2))
    stream = await client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    got = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            got.append(chunk.choices[0].delta.content)
    assert got == ["a b c d ", "e f g h "]


async def test_stop_is_prompt_with_hung_and_streaming_requests() -> None:
    fake = FakeOpenAI()
    await fake.start()
    client = AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0)
    fake.script_chat(
        ChatReply(error=ErrorReply(hang=30)), ChatReply(chunks=["x", "y"], chunk_delay=30)
    )

    async def read_stream() -> list[str | None]:
        stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
        return [c.choices[0].delta.content async for c in stream]

    hung = asyncio.create_task(client.chat.completions.create(model="m", messages=USER))
    await fake.wait_for_requests("chat/completions")
    streaming = asyncio.create_task(read_stream())
    await fake.wait_for_requests("chat/completions", count=2)
    await asyncio.sleep(0.1)
    start = time.monotonic()
    await fake.stop()
    assert time.monotonic() - start < 1.5
    for task in (hung, streaming):
        with pytest.raises(openai.APIConnectionError):
            await asyncio.wait_for(task, 2)
    await client.close()
    await fake.stop()  # idempotent


# --- images ---


async def test_image_default_url_serves_a_real_png(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    r = await client.images.generate(prompt="a cat", model="dall-e-3", size="1024x1024", n=2)
    assert r.data is not None and len(r.data) == 2
    url = r.data[0].url
    assert url is not None and url.startswith(f"{fake.url}/files/") and url.endswith(".png")
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"
        png = await resp.read()
    assert check_png(png) == (8, 8) and png == TINY_PNG
    assert fake.requests[0].json == {
        "prompt": "a cat",
        "model": "dall-e-3",
        "size": "1024x1024",
        "n": 2,
    }


async def test_image_b64_json_and_gpt_image(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    r = await client.images.generate(prompt="p", model="dall-e-2", response_format="b64_json")
    assert r.data and r.data[0].b64_json and r.data[0].url is None
    assert check_png(base64.b64decode(r.data[0].b64_json)) == (8, 8)
    r = await client.images.generate(prompt="p", model="gpt-image-1", quality="low")
    assert r.data and r.data[0].b64_json and r.output_format == "png"
    assert fake.requests[-1].json == {"prompt": "p", "model": "gpt-image-1", "quality": "low"}


async def test_image_script_and_errors(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    custom = b"\x89PNG\r\n\x1a\ncustom"
    fake.script_image(
        ImageReply(url="http://127.0.0.1:1/x.png", revised_prompt="a fluffy cat"),
        ImageReply(b64_png=custom),
        ImageReply(error=ErrorReply.content_policy()),
    )
    r = await client.images.generate(prompt="cat", model="dall-e-3")
    assert r.data and r.data[0].url == "http://127.0.0.1:1/x.png"
    assert r.data[0].revised_prompt == "a fluffy cat"
    r = await client.images.generate(prompt="cat", model="dall-e-3", response_format="b64_json")
    assert r.data and base64.b64decode(r.data[0].b64_json or "") == custom
    with pytest.raises(openai.BadRequestError) as exc:
        await client.images.generate(prompt="cat", model="dall-e-3")
    assert exc.value.code == "content_policy_violation"
    fake.fail("images/generations", ErrorReply.rate_limit())
    with pytest.raises(openai.RateLimitError):
        await client.images.generate(prompt="cat", model="dall-e-3")


# --- audio ---


async def test_transcription_default_script_and_formats(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    audio = b"\x01" * 1234
    t = await client.audio.transcriptions.create(
        model="whisper-1", file=("voice.ogg", audio, "audio/ogg"), language="de", prompt="hint"
    )
    assert t.text == "transcript of 1234 bytes"
    rec = fake.requests[-1]
    assert rec.path == "/v1/audio/transcriptions" and rec.json is None
    assert rec.form == {"model": "whisper-1", "language": "de", "prompt": "hint"}
    assert rec.files == {"file": audio} and rec.filenames == {"file": "voice.ogg"}

    fake.script_transcription("hallo welt", "plain", ErrorReply.server_error())
    v = await client.audio.transcriptions.create(
        model="whisper-1", file=("a.ogg", audio), response_format="verbose_json", language="de"
    )
    assert (v.text, v.language, v.duration) == ("hallo welt", "de", 1.0)
    s = await client.audio.transcriptions.create(
        model="whisper-1", file=("a.ogg", audio), response_format="text"
    )
    assert s == "plain"
    with pytest.raises(openai.InternalServerError):
        await client.audio.transcriptions.create(model="whisper-1", file=("a.ogg", audio))


async def test_transcription_rejects_empty_and_oversized_files(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.script_transcription("never used")
    with pytest.raises(openai.BadRequestError) as exc:
        await client.audio.transcriptions.create(model="whisper-1", file=("a.ogg", b""))
    assert exc.value.code == "audio_too_short" and "too short" in exc.value.message
    with pytest.raises(openai.APIStatusError) as big:
        await client.audio.transcriptions.create(
            model="whisper-1", file=("a.ogg", b"\0" * (MAX_AUDIO_BYTES + 1))
        )
    assert big.value.status_code == 413 and "Maximum content size" in big.value.message
    t = await client.audio.transcriptions.create(model="whisper-1", file=("a.ogg", b"1"))
    assert t.text == "never used"


async def test_speech_default_audio_and_script(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    r = await client.audio.speech.create(
        model="tts-1", input="hello", voice="alloy", response_format="opus"
    )
    data = await r.aread()
    if shutil.which("ffmpeg"):
        assert r.response.headers["content-type"] == "audio/ogg"
        assert data[:4] == b"OggS" and b"OpusHead" in data[:100] and len(data) > 1000
    else:  # pragma: no cover - the fallback MP3 frames
        assert data[:2] == b"\xff\xfb"
    mp3 = await (await client.audio.speech.create(model="tts-1", input="x", voice="alloy")).aread()
    assert mp3[:3] == b"ID3" or mp3[:2] in (b"\xff\xfb", b"\xff\xf3")
    assert fake.requests[0].json == {
        "model": "tts-1",
        "input": "hello",
        "voice": "alloy",
        "response_format": "opus",
    }

    fake.script_speech(b"RIFFfake", ErrorReply.rate_limit())
    r = await client.audio.speech.create(
        model="tts-1", input="x", voice="alloy", response_format="wav"
    )
    assert await r.aread() == b"RIFFfake" and r.response.headers["content-type"] == "audio/wav"
    with pytest.raises(openai.RateLimitError):
        await client.audio.speech.create(model="tts-1", input="x", voice="alloy")


async def test_speech_validation_and_fault_injection(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="input"):
        await client.audio.speech.create(model="tts-1", input="x" * 4097, voice="alloy")
    with pytest.raises(openai.BadRequestError, match="voice"):
        await client.post("/audio/speech", body={"model": "tts-1", "input": "x"}, cast_to=object)
    with pytest.raises(openai.BadRequestError, match="model"):
        await client.post("/audio/speech", body={"voice": "alloy", "input": "x"}, cast_to=object)
    fake.fail("audio/speech", ErrorReply.server_error(), times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await client.audio.speech.create(model="tts-1", input="x", voice="alloy")
    spoken = await client.audio.speech.create(
        model="gpt-4o-mini-tts",
        input="hi",
        voice="alloy",
        response_format="opus",
        instructions="calm",
    )
    assert (await spoken.aread())[:4] == b"OggS" or not shutil.which("ffmpeg")
    assert fake.requests[-1].json == {
        "model": "gpt-4o-mini-tts",
        "input": "hi",
        "voice": "alloy",
        "response_format": "opus",
        "instructions": "calm",
    }
    assert [r.status for r in fake.requests] == [400, 400, 400, 500, 500, 200]


# --- standalone ---


def test_cli_serves_with_configured_stream_timing() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "botcore.testing.fake_openai",
            "--port",
            "0",
            "--stream-first",
            "0.2",
            "--stream-total",
            "0.5",
            "--text",
            "a b c d e f g h i j k l",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base_url = line.strip().split("base_url=")[1]

        async def run() -> list[float]:
            c = AsyncOpenAI(base_url=base_url, api_key="sk-test-key", max_retries=0)
            start = time.monotonic()
            stream = await c.chat.completions.create(model="m", messages=USER, stream=True)
            times = [t - start for t, ch in await collect(stream) if ch.choices[0].delta.content]
            await c.close()
            return times

        times = asyncio.run(run())
        assert len(times) == 3
        assert 0.18 <= times[0] < 0.45 and 0.48 <= times[-1] < 0.9
    finally:
        proc.terminate()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_fail_randomly_fails_a_share_repeatably(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    async def outcomes() -> list[str]:
        found = []
        for _ in range(100):
            try:
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "x"}]
                )
                found.append("ok")
            except openai.RateLimitError:
                found.append("429")
            except openai.InternalServerError:
                found.append("500")
        return found

    fake.fail_randomly(
        "chat/completions", ErrorReply.rate_limit(), ErrorReply.server_error(), rate=0.3, seed=7
    )
    first = await outcomes()
    assert 15 <= first.count("429") + first.count("500") <= 45
    assert first.count("429") and first.count("500")
    fake.fail_randomly("chat/completions", rate=0.3, seed=7)  # same seed: the same sequence
    second = await outcomes()
    assert [o == "ok" for o in second] == [o == "ok" for o in first]
    fake.fail_randomly("chat/completions", rate=0)
    assert (await outcomes()).count("ok") == 100


@pytest.mark.parametrize("style", ["reasoning_content", "reasoning"])
async def test_reasoning_streams_beside_the_content(
    fake: FakeOpenAI, client: AsyncOpenAI, style: Any
) -> None:
    fake.script_chat(
        ChatReply(text="It is blue.", reasoning="Short waves scatter.", reasoning_style=style)
    )
    stream = await client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    thought, text, usage = "", "", None
    async for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta.model_dump()
            thought += delta.get(style) or ""
            text += delta.get("content") or ""
            assert not (delta.get(style) and delta.get("content"))  # one or the other per delta
        usage = chunk.usage or usage
    assert (thought, text) == ("Short waves scatter.", "It is blue.")
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == len("Short waves scatter.") // 4
    assert usage.completion_tokens == (len("It is blue.") + len("Short waves scatter.")) // 4
    fake.script_chat(
        ChatReply(text="It is blue.", reasoning="Short waves scatter.", reasoning_style=style)
    )
    whole = await client.chat.completions.create(model="m", messages=USER)
    message = whole.choices[0].message.model_dump()
    assert (message[style], message["content"]) == ("Short waves scatter.", "It is blue.")


async def test_think_style_puts_the_reasoning_in_the_content(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.script_chat(ChatReply(text="Blue.", reasoning="Hmm.", reasoning_style="think"))
    whole = await client.chat.completions.create(model="m", messages=USER)
    assert whole.choices[0].message.content == "<think>\nHmm.\n</think>\n\nBlue."


async def test_embeddings_as_the_api_documents_them(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    # The SDK asks for base64 unless told otherwise; floats on request; a string or a list.
    texts = ["the night sky has stars", "stars in the sky", "a recipe for bread"]
    result = await client.embeddings.create(model="text-embedding-3-small", input=texts)
    vectors = [item.embedding for item in result.data]
    assert [item.index for item in result.data] == [0, 1, 2] and len(vectors[0]) == 256
    assert result.usage.prompt_tokens > 0

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])  # shared words: near
    again = await client.embeddings.create(
        model="text-embedding-3-small", input=texts[0], encoding_format="float", dimensions=32
    )
    assert len(again.data) == 1 and len(again.data[0].embedding) == 32
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model="text-embedding-3-small", input=[])
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model="text-embedding-3-small", input=[""])
