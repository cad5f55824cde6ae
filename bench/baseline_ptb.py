"""The raw python-telegram-bot baseline: every text goes to the model and the answer is sent back.

No framework, no history: what a hand-written PTB bot costs, for botcore's figures to be compared
with. Endpoints come from the environment (see ``bench.driver.bot_env``); ``--stream`` streams the
answer and edits the message every 0.5 s, like a plain streaming PTB bot; ``--rate-limiter``
paces every call with PTB's own ``AIORateLimiter`` (30 a second overall, 20 a minute per group),
retrying a call that still gets a 429 (``max_retries``; PTB's default of 0 would give the first
429 to the handler, and the answer would be lost).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from openai import AsyncOpenAI
from telegram import Message, Update
from telegram.ext import (
    AIORateLimiter,
    ApplicationBuilder,
    ContextTypes,
    MessageHandler,
    filters,
)

MODEL = "gpt-4o-mini"
EDIT_INTERVAL = 0.5
MAX_RETRIES = 5
"""Tries after a 429, each after the wait Telegram asked for (AIORateLimiter's max_retries)."""


def build_client() -> AsyncOpenAI:
    """The OpenAI client, pointed at the endpoint named in the environment."""
    return AsyncOpenAI(
        base_url=os.environ["BENCH_OPENAI_URL"], api_key=os.environ["BENCH_OPENAI_KEY"]
    )


CLIENT = build_client()


async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Ask the model and reply with the whole answer."""
    message = update.effective_message
    assert message is not None and message.text is not None
    response = await CLIENT.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": message.text}]
    )
    await message.reply_text(response.choices[0].message.content or "…")


async def answer_streaming(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stream the answer: send the first words, edit at most every EDIT_INTERVAL, then finish."""
    message = update.effective_message
    assert message is not None and message.text is not None
    loop = asyncio.get_running_loop()
    stream = await CLIENT.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": message.text}], stream=True
    )
    text, shown, last = "", "", 0.0
    sent: Message | None = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if not text.strip() or text == shown:
            continue
        if sent is None:
            sent = await message.reply_text(text)
        elif loop.time() - last >= EDIT_INTERVAL:
            await sent.edit_text(text)
        else:
            continue
        shown, last = text, loop.time()
    if sent is None:
        await message.reply_text(text or "…")
    elif text != shown:
        await sent.edit_text(text)


def main() -> None:
    """Run the baseline bot until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stream", action="store_true", help="stream and edit every 0.5 s")
    parser.add_argument(
        "--rate-limiter", action="store_true", help="pace calls with PTB's AIORateLimiter"
    )
    args = parser.parse_args()
    builder = (
        ApplicationBuilder()
        .token(os.environ["BENCH_TELEGRAM_TOKEN"])
        .base_url(os.environ["BENCH_TELEGRAM_URL"])
        .concurrent_updates(256)
    )
    application = (
        builder.rate_limiter(AIORateLimiter(max_retries=MAX_RETRIES)).build()
        if args.rate_limiter
        else builder.build()
    )
    handler = answer_streaming if args.stream else answer
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, handler))
    application.run_polling()


if __name__ == "__main__":
    main()
