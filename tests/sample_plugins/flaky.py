"""A plugin whose streamed answer breaks after its first words, to trip the circuit breaker."""

from __future__ import annotations

from collections.abc import AsyncIterator

from botcore import Handler, TextStream, Turn, hookimpl


@hookimpl
def register_handlers() -> list[Handler]:
    return [Handler({"text"}, answer)]


async def answer(turn: Turn) -> TextStream:
    async def chunks() -> AsyncIterator[str]:
        yield "partial"
        raise RuntimeError("the stream broke")

    return TextStream(chunks())
