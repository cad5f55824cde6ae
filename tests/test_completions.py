"""botcore.completions against the fake OpenAI server: what chat gets back reads like the SDK's."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from botcore import transport
from botcore.completions import ChunkStream, Completions, Data, loads
from botcore.testing.fake_openai import ChatReply, ErrorReply, FakeOpenAI, ToolCall
from botcore.testing.leaks import LEAK
from botcore.transport import EnvProxies

REQUEST = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def completions(openai_server: FakeOpenAI) -> AsyncIterator[Completions]:
    client = AsyncOpenAI(
        api_key=openai_server.api_key, base_url=openai_server.base_url, max_retries=1
    )
    found = Completions.for_client(client)
    try:
        yield found
    finally:
        await found.close()
        await client.close()


async def test_a_completion_reads_like_the_sdks(
    completions: Completions, openai_server: FakeOpenAI
) -> None:
    openai_server.script_chat("Hello there")
    response = await completions.create(REQUEST, stream=False)
    assert response.choices[0].message.content == "Hello there"
    assert response.choices[0].message.refusal is None  # absent or null reads None
    assert response.model_dump()["choices"][0]["finish_reason"] == "stop"
    request = openai_server.chat_requests[-1]
    assert request["messages"] == REQUEST["messages"] and "stream" not in request


async def test_text_that_arrived_together_is_one_chunk(
    completions: Completions, openai_server: FakeOpenAI
) -> None:
    openai_server.script_chat(ChatReply(chunks=["One ", "two ", "three."]))
    stream = await completions.create(REQUEST, stream=True)
    assert isinstance(stream, ChunkStream)
    chunks = [chunk async for chunk in stream]
    text = [c.choices[0].delta.content for c in chunks if c.choices]
    assert "".join(t or "" for t in text) == "One two three."
    assert len(text) < 3  # merged: the fake wrote them all at once
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert openai_server.chat_requests[-1]["stream_options"] == {"include_usage": True}


async def test_tool_call_chunks_pass_unmerged(
    completions: Completions, openai_server: FakeOpenAI
) -> None:
    openai_server.script_chat(ChatReply(tool_calls=[ToolCall("weather", {"city": "Oslo"})]))
    stream = await completions.create(REQUEST, stream=True)
    calls = [
        call
        async for chunk in stream
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
    ]
    assert calls[0].function.name == "weather"
    arguments = "".join(call.function.arguments or "" for call in calls)
    assert loads(arguments) == {"city": "Oslo"}


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ErrorReply.rate_limit(), openai.RateLimitError),
        (ErrorReply.content_policy(), openai.BadRequestError),
        (
            ErrorReply(status=401, message="bad key", type="invalid_request_error"),
            openai.AuthenticationError,
        ),
    ],
    ids=["429", "400", "401"],
)
async def test_errors_are_the_sdks_after_its_retries(
    completions: Completions,
    openai_server: FakeOpenAI,
    error: ErrorReply,
    kind: type[openai.APIStatusError],
) -> None:
    openai_server.fail("chat/completions", error, times=5)
    with pytest.raises(kind) as raised:
        await completions.create(REQUEST, stream=True)
    assert raised.value.status_code == error.status
    assert raised.value.message.endswith(error.message)
    retried = error.status == 429  # max_retries=1: a 429 is tried twice, a 400 or 401 once
    assert len(openai_server.chat_requests) == (2 if retried else 1)


async def test_a_retry_that_succeeds_is_not_an_error(
    completions: Completions, openai_server: FakeOpenAI
) -> None:
    openai_server.fail("chat/completions", ErrorReply.server_error())
    openai_server.script_chat("after a retry")
    response = await completions.create(REQUEST, stream=False)
    assert response.choices[0].message.content == "after a retry"


def test_data_reads_keys_as_attributes() -> None:
    data = loads(b'{"a": {"b": [{"c": 1}]}, "n": null}')
    assert isinstance(data, Data) and data.a.b[0].c == 1
    assert data.n is None and data.missing is None
    assert data.model_dump(exclude_none=True) == {"a": {"b": [{"c": 1}]}}


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[aiohttp.ClientSession]:
    """Every aiohttp session opened during the test, in order."""
    opened: list[aiohttp.ClientSession] = []
    real = aiohttp.ClientSession

    def counted(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        session = real(*args, **kwargs)
        opened.append(session)
        return session

    monkeypatch.setattr(aiohttp, "ClientSession", counted)
    return opened


async def test_a_burst_of_first_calls_shares_one_session(
    completions: Completions,
    openai_server: FakeOpenAI,
    sessions: list[aiohttp.ClientSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    replies = await asyncio.gather(
        *(
            completions.create(
                {**REQUEST, "messages": [{"role": "user", "content": f"q{i}"}]}, stream=False
            )
            for i in range(50)
        )
    )
    assert sorted(r.choices[0].message.content for r in replies) == sorted(
        f"echo: q{i}" for i in range(50)
    )
    assert len(sessions) == 1
    await completions.close()
    assert sessions[0].closed
    gc.collect()
    assert not [r for r in caplog.records if LEAK.search(r.getMessage())]


async def test_a_failed_opening_lets_the_next_call_open(
    completions: Completions,
    openai_server: FakeOpenAI,
    sessions: list[aiohttp.ClientSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = EnvProxies.get
    failures = [OSError("proxy lookup failed")]

    async def flaky(self: EnvProxies, url: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(self, url)

    monkeypatch.setattr(EnvProxies, "get", flaky)
    results = await asyncio.gather(
        *(completions.create(REQUEST, stream=False) for _ in range(3)), return_exceptions=True
    )
    assert [type(r) for r in results if isinstance(r, BaseException)] == [OSError]
    assert len(sessions) == 1  # the failed opening made none; the next caller opened it once
    response = await completions.create(REQUEST, stream=False)
    assert response.choices[0].message.content == "echo: hi"


async def test_close_during_the_opening_closes_what_it_opens(
    completions: Completions,
    openai_server: FakeOpenAI,
    sessions: list[aiohttp.ClientSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    reading, go_on = asyncio.Event(), threading.Event()
    proxy_for = transport._env_proxy

    def slow(url: Any) -> Any:  # looked up on a worker thread while the call opens
        loop.call_soon_threadsafe(reading.set)
        go_on.wait(10)
        return proxy_for(url)

    monkeypatch.setattr(transport, "_env_proxy", slow)
    call = asyncio.create_task(completions.create(REQUEST, stream=False))
    await reading.wait()
    closing = asyncio.create_task(completions.close())
    await asyncio.sleep(0)  # close() starts, and waits for the opening
    go_on.set()
    await asyncio.gather(call, closing, return_exceptions=True)
    assert len(sessions) == 1 and sessions[0].closed


@pytest.mark.parametrize("style", ["reasoning_content", "reasoning"])
async def test_reasoning_that_arrived_together_is_one_chunk_before_the_text(
    completions: Completions, openai_server: FakeOpenAI, style: Any
) -> None:
    openai_server.script_chat(
        ChatReply(
            chunks=["The ", "answer."],
            reasoning_chunks=["Let ", "me ", "think."],
            reasoning_style=style,
        )
    )
    stream = await completions.create(REQUEST, stream=True)
    deltas = [chunk.choices[0].delta async for chunk in stream if chunk.choices]
    kinds = [(bool(d.get(style)), bool(d.content)) for d in deltas if d.get(style) or d.content]
    assert kinds == [(True, False), (False, True)]  # merged by kind, never mixed, in order
    assert [d.get(style) or d.content for d in deltas if d.get(style) or d.content] == [
        "Let me think.",
        "The answer.",
    ]
