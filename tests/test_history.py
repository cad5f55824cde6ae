"""history end to end: SQLite survives restarts and kill -9; retention, scopes, /clear."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from botcore.testing.fake_openai import ChatReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness

NO_STREAM = {"stream": False}


H = {"path": "h.sqlite3"}


def user_texts(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "user"]


async def test_history_survives_a_restart(
    bot_harness: BotHarness, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"chat": NO_STREAM}
    store = {"path": "data/h.sqlite3"}
    first = await bot_harness.start(["history", "chat"], store=store, settings=settings)
    await telegram.reply_to("remember: the code is 1234")
    await first.stop()
    await bot_harness.start(["history", "chat"], store=store, settings=settings)
    await telegram.reply_to("what was the code?")
    assert user_texts(openai_server.last_chat_messages()) == [
        "remember: the code is 1234",
        "what was the code?",
    ]
    assert await asyncio.to_thread(Path("data/h.sqlite3").is_file)


async def test_retention_keeps_the_newest_messages(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(
        ["history", "chat"],
        store=H,
        settings={"history": {"max_messages": 3}, "chat": NO_STREAM},
    )
    for text in ("one", "two", "three"):
        await telegram.reply_to(text)
    with sqlite3.connect("h.sqlite3") as db:
        (count,) = db.execute("SELECT COUNT(*) FROM lists").fetchone()
    assert count == 3
    # The store kept [echo: one, two, echo: two]; a context never opens on an assistant message.
    assert openai_server.last_chat_messages()[1:] == [
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "echo: two"},
        {"role": "user", "content": "three"},
    ]


async def test_old_messages_expire(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    running = await start_bot(
        ["history", "chat"],
        store=H,
        settings={"history": {"max_age_days": 1}, "chat": NO_STREAM},
    )
    await telegram.reply_to("ancient")
    with sqlite3.connect("h.sqlite3") as db:
        db.execute("UPDATE lists SET created = created - 2 * 86400")
    await telegram.reply_to("recent")
    assert user_texts(openai_server.last_chat_messages()) == ["recent"]
    assert running.app.history is not None


async def test_a_file_locked_by_another_writer_delays_but_loses_nothing(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """Writes run inline and never wait for a lock there: a locked file sends them to the
    store's thread, which waits for the lock, and the turn goes on."""
    await start_bot(["history", "chat"], store=H, settings={"chat": NO_STREAM})
    await telegram.reply_to("before the lock")
    other = sqlite3.connect("h.sqlite3", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process writing: holds the write lock
        await telegram.send_message("while locked")
        await asyncio.sleep(0.5)
        assert telegram.bot_messages(42)[-1].text == "echo: before the lock"  # still waiting
        other.execute("COMMIT")
    finally:
        other.close()
    reply = await telegram.next_message(42, timeout=10)
    assert reply.text == "echo: while locked"
    await telegram.reply_to("after the lock")
    assert user_texts(openai_server.last_chat_messages()) == [
        "before the lock",
        "while locked",
        "after the lock",
    ]


async def test_group_scope_chat_versus_user(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(
        ["history", "chat"],
        store=H,
        settings={
            "history": {"scope": "user"},
            "chat": {"stream": False, "groups": "all"},
        },
    )
    group = {"chat_id": -100, "chat_type": "group"}
    await telegram.reply_to("from Ann", user_id=1, first_name="Ann", **group)
    await telegram.reply_to("from Bob", user_id=2, first_name="Bob", **group)
    assert user_texts(openai_server.last_chat_messages()) == ["Bob: from Bob"]


async def test_group_scope_user_gives_each_channel_and_anonymous_admins_their_own(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"history": {"scope": "user"}, "chat": {"stream": False, "groups": "all"}}
    await start_bot(["history", "chat"], store=H, settings=settings)
    group: dict[str, Any] = {"chat_id": -100, "chat_type": "supergroup"}
    # Telegram gives every channel the same `from` (Channel_Bot): the channel is the sender.
    await telegram.reply_to("from one", sender_chat=-1001, **group)
    await telegram.reply_to("from two", sender_chat=-1002, **group)
    assert user_texts(openai_server.last_chat_messages()) == ["Channel: from two"]
    await telegram.reply_to("one again", sender_chat=-1001, **group)
    assert user_texts(openai_server.last_chat_messages()) == [
        "Channel: from one",
        "Channel: one again",
    ]
    # Anonymous admins speak for the group: one conversation for all of them, theirs alone.
    await telegram.reply_to("anonymous", sender_chat=-100, **group)
    assert user_texts(openai_server.last_chat_messages()) == ["Group: anonymous"]
    await telegram.reply_to("a member", user_id=5, first_name="Ann", **group)
    assert user_texts(openai_server.last_chat_messages()) == ["Ann: a member"]


async def test_group_scope_chat_shares_the_conversation(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(
        ["history", "chat"],
        store=H,
        settings={"chat": {"stream": False, "groups": "all"}},
    )
    group = {"chat_id": -100, "chat_type": "group"}
    await telegram.reply_to("from Ann", user_id=1, first_name="Ann", **group)
    await telegram.reply_to("from Bob", user_id=2, first_name="Bob", **group)
    assert user_texts(openai_server.last_chat_messages()) == ["Ann: from Ann", "Bob: from Bob"]


async def test_clear_in_russian(start_bot, telegram: FakeTelegram) -> None:
    await start_bot(["history"], store=H)
    assert (
        await telegram.reply_to("/clear", language_code="ru")
    ).text == "Готово: я забыл наш разговор."


async def test_kill_9_mid_reply_loses_no_answered_turn(
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    bot_harness: BotHarness,
    tmp_path: Path,
    bot_output,
) -> None:
    """The real `botcore run` process, from a real bot.toml, killed with SIGKILL mid-stream."""
    config = bot_harness.write_config(
        "bot.toml",
        ["history", "chat"],
        bot={"poll_timeout": 5},
        store={"path": tmp_path / "h.sqlite3"},
    )
    bot = await bot_harness.spawn(
        config, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert (await telegram.reply_to("/start", timeout=20)).text.startswith("Hi!")
        for i in range(5):
            await telegram.send_message(f"question {i}", user_id=100 + i)
        for i in range(5):
            message = await telegram.next_message(100 + i, timeout=10)
            await telegram.wait_for(lambda m=message, i=i: m.text == f"echo: question {i}")
        openai_server.script_chat(
            ChatReply(text="a long answer " * 50, first_chunk_delay=0.1, total_duration=30)
        )
        await telegram.send_message("the one in flight", user_id=200)
        # the answer has started streaming (as a draft: private chat)
        await telegram.wait_for(lambda: bool(telegram.drafts(200)), timeout=10)
        await asyncio.sleep(0.3)  # let the history plugin commit what it will
        bot.send_signal(signal.SIGKILL)
        await bot.wait()
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
    stderr = (await bot.stderr.read()).decode() if bot.stderr else ""
    bot_output(stderr)
    assert telegram.token.split(":")[1] not in stderr  # and the token never reached the log
    with sqlite3.connect(tmp_path / "h.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = [json.loads(r[0]) for r in db.execute("SELECT item FROM lists ORDER BY id")]
    for i in range(5):
        assert {"role": "user", "content": f"question {i}"} in rows
        assert {"role": "assistant", "content": f"echo: question {i}"} in rows
    # The question in flight was stored before the model was asked, so even it is not lost.
    assert {"role": "user", "content": "the one in flight"} in rows


async def test_memory_store_keeps_the_conversation_and_writes_no_file(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], store={"backend": "memory"}, settings={"chat": NO_STREAM})
    await telegram.reply_to("first")
    await telegram.reply_to("second")
    assert user_texts(openai_server.last_chat_messages()) == ["first", "second"]
    assert not await asyncio.to_thread(Path("botcore.sqlite3").exists)


async def test_a_bot_that_stores_nothing_keeps_nothing_once_its_updates_are_handled(
    start_bot, telegram: FakeTelegram
) -> None:
    """Without history, the store holds only the journal of updates in flight (so that a kill
    loses none): empty again once each is answered."""
    from botcore.journal import NAMESPACE

    running = await start_bot([])
    assert (await telegram.reply_to("/start")).text.startswith("Hi!")
    for _ in range(100):  # the journal forgets an update just after its answer is sent
        if not await running.app.store.scan(NAMESPACE):
            break
        await asyncio.sleep(0.05)
    assert await running.app.store.scan(NAMESPACE) == {}


async def test_load_reads_only_the_newest_messages_asked_for() -> None:
    from types import SimpleNamespace

    from botcore_history import History, Settings

    from botcore.stores.memory import MemoryStore

    history = History(MemoryStore(), lambda: Settings(max_messages=5))
    turn: Any = SimpleNamespace(is_private=True, chat_id=7, topic_id=None, update_id=1, extra={})
    await history.append(turn, *({"role": "user", "content": str(n)} for n in range(8)))
    contents = [m["content"] for m in await history.load(turn)]
    assert contents == ["3", "4", "5", "6", "7"]  # retention kept 5
    assert [m["content"] for m in await history.load(turn, limit=2)] == ["6", "7"]
    assert len(await history.load(turn, limit=50)) == 5  # never more than retention keeps
    assert await history.load(turn, limit=0) == []


async def test_a_store_file_of_the_old_layout_opens_with_its_conversations(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """A file written by botcore with schema 1 (conversations in a `messages` table) is migrated
    at open: the conversation goes on where it was."""
    with sqlite3.connect("h.sqlite3") as db:  # as earlier versions of botcore made it
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        db.execute(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation TEXT NOT NULL, "
            "created REAL NOT NULL, message TEXT NOT NULL)"
        )
        db.execute("CREATE INDEX messages_by_conversation ON messages (conversation, id)")
        db.executemany(
            "INSERT INTO messages (conversation, created, message) VALUES (?, ?, ?)",
            [
                ("chat:42", time.time(), json.dumps(m))
                for m in (
                    {"role": "user", "content": "the code is 1234"},
                    {"role": "assistant", "content": "noted"},
                )
            ],
        )
    await start_bot(["history", "chat"], store=H, settings={"chat": NO_STREAM})
    await telegram.reply_to("what was the code?")
    assert openai_server.last_chat_messages()[1:] == [
        {"role": "user", "content": "the code is 1234"},
        {"role": "assistant", "content": "noted"},
        {"role": "user", "content": "what was the code?"},
    ]
    with sqlite3.connect("h.sqlite3") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        (version,) = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert "messages" not in tables and version == "2"


async def test_a_setting_changed_after_start_up_applies_from_the_next_turn(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    running = await start_bot(["history", "chat"], store=H, settings={"chat": NO_STREAM})
    await telegram.reply_to("one")
    await running.app.override("plugins.history.max_messages", 2)  # as an admin command would
    await telegram.reply_to("two")
    await telegram.reply_to("three")
    messages = openai_server.last_chat_messages()
    assert [(m["role"], m["content"]) for m in messages if m["role"] != "system"] == [
        ("user", "two"),
        ("assistant", "echo: two"),
        ("user", "three"),
    ]
