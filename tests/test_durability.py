"""kill -9 in the worst moment, on the real `botcore run` process: answers already shown, and
updates Telegram was told we have (confirmed) but whose turns had not run. After a restart every
question in flight is answered or explained, and the history holds what the user saw."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

from botcore.testing.fake_openai import ChatReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness

NOTICE = (
    "Sorry, I was restarted while answering your message, so the answer was cut off. "
    "Please send it again."
)
NOTICE_RU = (
    "Извините, я перезапустился, пока отвечал на ваше сообщение, и ответ оборвался. "
    "Отправьте его, пожалуйста, ещё раз."
)
STALLED = ChatReply(chunks=["Let me think about ", "that for a long while."], chunk_delay=600)
"""An answer whose first words are shown, and then nothing more for ten minutes."""


def texts(telegram: FakeTelegram, chat_id: int) -> list[str]:
    return [m.text or "" for m in telegram.bot_messages(chat_id)]


def context_of(openai_server: FakeOpenAI, question: str) -> list[dict[str, Any]]:
    """The messages of the chat request that asked `question`."""
    for request in openai_server.requests:
        messages = (request.json or {}).get("messages") or []
        if request.path.endswith("/chat/completions") and messages[-1]["content"] == question:
            return [m for m in messages if m["role"] != "system"]
    raise AssertionError(f"no request asked {question!r}")


async def test_kill_9_mid_answer_keeps_what_was_shown_and_answers_or_explains_the_rest(
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    bot_harness: BotHarness,
    tmp_path: Path,
    bot_output,
) -> None:
    """Twelve private chats see the first words of their answer (drafts) when the process is
    killed; six of them have two more messages waiting behind it, already confirmed to Telegram.
    After the restart the twelve are told, in their language, that the answer was cut off, the
    twelve waiting messages are answered in order, and each chat's history holds the shown words,
    marked as interrupted, after the question."""
    config = bot_harness.write_config(
        "bot.toml",
        ["history", "chat"],
        bot={"poll_timeout": 5},
        store={"path": tmp_path / "h.sqlite3"},
    )
    runs = iter(range(2))

    async def start() -> asyncio.subprocess.Process:
        with (tmp_path / f"run{next(runs)}.log").open("w") as log:  # the child keeps its copy
            return await bot_harness.spawn(config, stdout=asyncio.subprocess.DEVNULL, stderr=log)

    users = list(range(700, 712))
    queued = users[:6]
    russian = set(users[::4])

    def language(user: int) -> str:
        return "ru" if user in russian else "en"

    bot = await start()
    try:
        assert (await telegram.reply_to("/start", timeout=20)).text.startswith("Hi!")
        openai_server.script_chat(*[STALLED] * len(users))
        for user in users:
            await telegram.send_message(
                f"question {user}", user_id=user, language_code=language(user)
            )
        await telegram.wait_for(lambda: all(telegram.drafts(u) for u in users), timeout=20)
        for user in queued:
            for word in ("then", "last"):
                await telegram.send_message(
                    f"{word} {user}", user_id=user, language_code=language(user)
                )
        # Telegram has been told the bot has them: it will never send them again.
        await telegram.wait_for(lambda: telegram.pending_updates == 0, timeout=20)
        shown = {u: telegram.drafts(u)[-1].plain.strip() for u in users}
        bot.send_signal(signal.SIGKILL)
        await bot.wait()
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
    assert set(shown.values()) == {"Let me think about"}
    assert not any(texts(telegram, u) for u in users)  # nothing but drafts so far

    bot = await start()
    try:
        expected = {
            u: [NOTICE_RU if u in russian else NOTICE]
            + ([f"echo: then {u}", f"echo: last {u}"] if u in queued else [])
            for u in users
        }

        def settled() -> bool:
            return all(len(texts(telegram, u)) >= len(expected[u]) for u in users)

        with contextlib.suppress(TimeoutError, AssertionError):  # counted below, to say how many
            await telegram.wait_for(settled, timeout=30)
        in_flight = len(users) + 2 * len(queued)
        explained = sum(
            text in (NOTICE, NOTICE_RU) or text.startswith("echo: ")
            for u in users
            for text in texts(telegram, u)
        )
        assert explained == in_flight, f"{in_flight - explained} of {in_flight} got no word"
        for user in users:
            assert texts(telegram, user) == expected[user]
        # The history: the question, then what the user saw of the answer, marked.
        for user in users:
            await telegram.send_message(f"after {user}", user_id=user, language_code=language(user))
        await telegram.wait_for(
            lambda: all(f"echo: after {u}" in texts(telegram, u) for u in users), timeout=20
        )
        for user in users:
            context = context_of(openai_server, f"after {user}")
            later = (
                [f"then {user}", f"echo: then {user}", f"last {user}", f"echo: last {user}"]
                if user in queued
                else []
            )
            assert [m["content"] for m in context] == [
                f"question {user}",
                f"{shown[user]} … [interrupted]",
                *later,
                f"after {user}",
            ]
    finally:
        bot.send_signal(signal.SIGTERM)
        await bot.wait()
    for run in range(2):
        bot_output((tmp_path / f"run{run}.log").read_text())
