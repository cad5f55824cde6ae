"""A plugin that answers with texts and streams of given shapes, to exercise delivery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from botcore import Command, Handler, Text, TextStream, Turn, UserError, hookimpl


@hookimpl
def register_commands() -> list[Command]:
    return [
        Command("long", long_text, help="A very long answer"),
        Command("md", markdown, help="Markdown"),
        Command("stream", stream, help="A streamed answer"),
        Command("slow", slow, help="Takes a while"),
    ]


@hookimpl
def register_handlers() -> list[Handler]:
    return [Handler({"text"}, echo)]


async def echo(turn: Turn) -> str:
    return f"echo: {turn.text}"


async def long_text(turn: Turn) -> Text:
    lines = [f"line {i} " + "x" * 60 for i in range(150)]
    code = "```python\n" + "\n".join(f"print({i})  # " + "y" * 40 for i in range(80)) + "\n```"
    return Text("\n".join(lines) + "\n\n" + code + "\n\nthe end", markdown=True)


async def markdown(turn: Turn) -> Text:
    return Text("**bold** and `code`", markdown=True)


async def stream(turn: Turn) -> TextStream:
    words = turn.args.split() or ["one", "two", "three"]

    async def chunks() -> AsyncIterator[str]:
        for word in words:
            if word == "fail":
                raise UserError("the stream failed")
            if word == "crash":
                raise RuntimeError("the stream broke")
            await asyncio.sleep(0.15)
            yield word + " "

    return TextStream(chunks())


async def slow(turn: Turn) -> str:
    await asyncio.sleep(float(turn.args or "1"))
    return f"slept {turn.args}"
