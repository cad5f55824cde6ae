"""Bad input end to end: odd texts, odd Unicode, model output that breaks Markdown, files and
updates the bot does not handle, commands meant for others, and fuzzed bot.toml files. Each one
gets a clear answer (or a deliberate silence) and loses nothing."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botcore.config import ConfigError, load_config
from botcore.testing.fake_openai import ChatReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram

ECHO = "sample_plugins.echo"
BOT = "botcore_test_bot"
GROUP = {"chat_id": -100, "chat_type": "supergroup"}
UNSUPPORTED = "I can't handle this kind of message. /help lists what I can do."
ROOT = Path(__file__).resolve().parent.parent


def user_texts(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "user"]


def texts(telegram: FakeTelegram, chat_id: int = 42) -> list[str]:
    return [m.text or "" for m in telegram.bot_messages(chat_id)]


def raw_message(chat_id: int = 42, chat_type: str = "private", **fields: Any) -> dict[str, Any]:
    """A message as Telegram sends it, for updates the kit has no send_* helper for."""
    chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
    if chat_type == "private":
        chat["first_name"] = "Test"
    else:
        chat["title"] = "A group"
    message: dict[str, Any] = {
        "message_id": 10_000 + int(time.monotonic_ns() % 1_000_000),
        "date": int(time.time()),
        "chat": chat,
        "from": {"id": 42, "is_bot": False, "first_name": "Test", "language_code": "en"},
    }
    message.update(fields)
    return message


# --------------------------------------------------------------------------- texts


async def test_empty_and_blank_texts_get_a_clear_answer(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], store={"path": "h.sqlite3"})
    assert (await telegram.reply_to("   \n\t ")).text == (
        "Your message is empty: write me a question."
    )
    await telegram.send_update({"message": raw_message(text="")})
    assert (await telegram.next_message(42)).text == "Your message is empty: write me a question."
    mention_only = await telegram.reply_to(f"@{BOT}", **GROUP)  # type: ignore[arg-type]
    assert mention_only.text == "Your message is empty: write me a question."
    assert openai_server.chat_requests == []
    assert (await telegram.reply_to("real question")).text == "echo: real question"
    assert user_texts(openai_server.last_chat_messages()) == ["real question"]


async def test_a_100000_character_text(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], store={"path": "h.sqlite3"})
    huge = "word " * 20_000
    reply = await telegram.reply_to(huge)
    assert reply.text.startswith("Your message is too long for the model: about 33")
    assert openai_server.chat_requests == []
    assert (await telegram.reply_to("short one")).text == "echo: short one"
    assert user_texts(openai_server.last_chat_messages()) == ["short one"]


@pytest.mark.timeout(150)
async def test_a_100000_character_reply_is_split_and_nothing_is_lost(
    start_bot, telegram: FakeTelegram
) -> None:
    # ~26 messages to one chat: Telegram (and the fake) take about one a second.
    await start_bot([ECHO])
    huge = "".join(f"line {i:05d} " + "é😀" * 5 + "\n" for i in range(100_000 // 26))
    await telegram.send_message(huge)
    await telegram.wait_for(
        lambda: (
            "".join(texts(telegram)).replace("\n", "")
            == ("echo: " + huge).strip().replace("\n", "")
        ),
        timeout=120,
    )
    assert all(len(m.text or "") <= 4096 for m in telegram.bot_messages(42))
    assert telegram.flood.violations == 0
    assert all(c.status == 200 for c in telegram.calls("sendMessage"))


UNUSUAL = [
    ("rtl", "مرحبا بالعالم \u200f שלום עולם \u202eabc\u202c"),
    ("zero-width", "zero\u200bwidth\u200c\u200djoiner\ufeff"),
    ("emoji-sequences", "👨‍👩‍👧‍👦 🏳️‍🌈 🇺🇦 👍🏽 1️⃣ é (e\u0301)"),
    ("combining", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫ g̨͉o̹̠"),
]


@pytest.mark.parametrize("text", [t for _, t in UNUSUAL], ids=[n for n, _ in UNUSUAL])
async def test_unusual_unicode_goes_through_intact(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, text: str
) -> None:
    await start_bot(["history", "chat"], store={"path": "h.sqlite3"})
    openai_server.script_chat(f"**{text}** and `{text}`")
    reply = await telegram.reply_to(text, settle=0.3)
    assert reply.text == f"{text} and {text}"
    assert {e["type"] for e in reply.entities} == {"bold", "code"}
    assert (await telegram.reply_to("next")).text == "echo: next"
    assert user_texts(openai_server.last_chat_messages()) == [text, "next"]


async def test_lone_surrogates_from_a_client_are_replaced_not_fatal(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    """Legal in JSON ("\\ud83d"), impossible in UTF-8: SQLite, OpenAI and Telegram refuse them."""
    await start_bot(["history", "chat"], store={"path": str(tmp_path / "h.db")})
    await telegram.send_message("half an emoji: \ud83d and \ude00 end")
    reply = await telegram.next_message(42)
    await telegram.wait_for(lambda: reply.text == "echo: half an emoji: \ufffd and \ufffd end")
    assert (await telegram.reply_to("next")).text == "echo: next"
    assert user_texts(openai_server.last_chat_messages()) == [
        "half an emoji: \ufffd and \ufffd end",
        "next",
    ]
    await telegram.send_message("/unknown\udc80")  # in a command, too
    assert (await telegram.next_message(42)).text.startswith("I don't know the command")


# --------------------------------------------------------------------------- model output


BROKEN_MARKDOWN = [
    ("unclosed-fence", "Here:\n```python\nprint('never closed')\n", ["print('never closed')"]),
    ("unbalanced-stars", "a *b **c ***d and _e __f", ["a", "b", "c", "d", "e", "f"]),
    (
        "html-tags",
        "<b>not html</b> <script>alert(1)</script> &amp; &lt; <br/>",
        ["<b>not html</b>", "<script>alert(1)</script>", "& < <br/>"],
    ),
    ("bad-link", "[click](javascript:alert(1)) [empty]() [x](not a url)", ["click"]),
]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(a, e) for _, a, e in BROKEN_MARKDOWN],
    ids=[n for n, _, _ in BROKEN_MARKDOWN],
)
async def test_markdown_breaking_model_output_is_delivered(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, answer: str, expected: list[str]
) -> None:
    await start_bot(["chat"])
    openai_server.script_chat(ChatReply(text=answer, chunk_delay=0.05))
    reply = await telegram.reply_to("go", settle=0.5)
    for piece in expected:
        assert piece in (reply.text or "")
    assert len(telegram.bot_messages(42)) == 1  # no error message after it
    assert all(c.status == 200 for c in telegram.requests if c.method != "getUpdates")


async def test_entities_across_the_4096_split(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"])
    body = ("word " * 1000).strip()
    answer = f"**{body}** then `{'x' * 3000}` and [a link](https://example.com/{'y' * 50})"
    openai_server.script_chat(ChatReply(text=answer, chunk_delay=0.01))
    await telegram.send_message("go")
    await telegram.wait_for(lambda: "a link" in "".join(texts(telegram)[-1:]), timeout=15)
    messages = telegram.bot_messages(42)
    assert len(messages) >= 2 and all(len(m.text or "") <= 4096 for m in messages)
    assert "".join(m.text or "" for m in messages).replace(" ", "").count("word") == 1000
    kinds = {e["type"] for m in messages for e in m.entities}
    assert {"bold", "code", "text_link"} <= kinds
    assert all(c.status == 200 for c in telegram.requests if c.method != "getUpdates")


# --------------------------------------------------------------------------- files and updates


async def test_voice_over_the_limit_without_a_declared_size(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """Clients may omit file_size: then Telegram's own getFile refusal is explained."""
    await start_bot(["voice", "chat"])
    file_id, unique = telegram.add_file(b"\x00" * (30 * 1024 * 1024), file_path_suffix=".oga")
    voice = {"file_id": file_id, "file_unique_id": unique, "duration": 5, "mime_type": "audio/ogg"}
    await telegram.send_update({"message": raw_message(voice=voice)})
    assert (await telegram.next_message(42)).text == "The file is too big: the limit is 20 MB."
    assert len(telegram.calls("getFile")) == 1
    assert not [r for r in openai_server.requests if "audio" in r.path]


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        (
            "pdf",
            {
                "document": {
                    "file_id": "D1",
                    "file_unique_id": "d1",
                    "mime_type": "application/pdf",
                    "file_name": "a.pdf",
                    "file_size": 10,
                }
            },
        ),
        ("location", {"location": {"latitude": 51.5, "longitude": -0.12}}),
        ("contact", {"contact": {"phone_number": "+100", "first_name": "A"}}),
        ("dice", {"dice": {"emoji": "🎲", "value": 3}}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_messages_the_bot_does_not_handle(
    start_bot, telegram: FakeTelegram, kind: str, fields: dict[str, Any]
) -> None:
    await start_bot(["history", "chat", "voice", "image"], store={"path": "h.db"})
    await telegram.send_update({"message": raw_message(**fields)})
    assert (await telegram.next_message(42)).text == UNSUPPORTED
    group = raw_message(chat_id=-100, chat_type="supergroup", **fields)
    await telegram.send_update({"message": group})  # in a group: silence, not noise
    assert (await telegram.reply_to("still fine")).text == "echo: still fine"
    assert telegram.bot_messages(-100) == []


async def test_a_photo_with_a_caption_is_not_mistaken_for_text(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["image", "voice"])  # no plugin that looks at pictures
    await telegram.send_photo(b"\x89PNG fake", caption="what is this?")
    assert (await telegram.next_message(42)).text == UNSUPPORTED
    assert openai_server.requests == []


async def test_a_sticker_whose_file_is_gone_gets_a_clear_message(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """getFile refuses an expired or unknown file_id: the user is asked to send it again."""
    await start_bot(["history", "chat"], store={"path": "h.db"})
    sticker = {
        "file_id": "EXPIRED",
        "file_unique_id": "s1",
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
    }
    await telegram.send_update({"message": raw_message(sticker=sticker)})
    assert (await telegram.next_message(42)).text == (
        "I could not get this file from Telegram. Please send it again."
    )
    assert openai_server.requests == []
    assert (await telegram.reply_to("still fine")).text == "echo: still fine"


async def test_an_edited_message_gets_a_hint_not_a_second_answer(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], store={"path": "h.db"})
    sent = await telegram.send_message("wrnog question")
    assert (await telegram.next_message(42)).text == "echo: wrnog question"
    edited = {**sent, "text": "right question", "edit_date": int(time.time())}
    await telegram.send_update({"edited_message": edited})
    assert (await telegram.next_message(42)).text == (
        "I only see new messages: please send the corrected text as a new message."
    )
    await telegram.send_update(
        {"edited_message": {**edited, "from": {**edited["from"], "language_code": "ru"}}}
    )
    assert (await telegram.next_message(42)).text.startswith("Я вижу только новые сообщения")
    group = await telegram.send_message(f"@{BOT} hi", **GROUP)  # type: ignore[arg-type]
    await telegram.next_message(-100)
    await telegram.send_update({"edited_message": {**group, "text": f"@{BOT} hello"}})
    assert (await telegram.reply_to("after")).text == "echo: after"
    assert len(telegram.bot_messages(-100)) == 1  # no hint in groups
    assert len(openai_server.chat_requests) == 3


async def test_channel_posts_are_not_requested_nor_answered(
    start_bot, telegram: FakeTelegram
) -> None:
    await start_bot([ECHO])
    await telegram.send_message("a post", chat_id=-1009, chat_type="channel")
    assert (await telegram.reply_to("hi")).text == "echo: hi"
    assert telegram.bot_messages(-1009) == []
    allowed = telegram.calls("getUpdates")[-1].params["allowed_updates"]
    assert "channel_post" not in allowed


async def test_anonymous_group_admins_are_answered(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(
        ["history", "chat"], store={"path": "h.db"}, settings={"history": {"scope": "user"}}
    )
    text = f"@{BOT} who am I?"
    message = raw_message(
        chat_id=-100,
        chat_type="supergroup",
        text=text,
        entities=[{"type": "mention", "offset": 0, "length": len(BOT) + 1}],
        sender_chat={"id": -100, "type": "supergroup", "title": "A group"},
        **{"from": {"id": 1087968824, "is_bot": True, "first_name": "Group",
                    "username": "GroupAnonymousBot"}},
    )  # fmt: skip
    await telegram.send_update({"message": message})
    reply = await telegram.next_message(-100)
    await telegram.wait_for(lambda: reply.text == "echo: Group: who am I?")
    assert user_texts(openai_server.last_chat_messages()) == ["Group: who am I?"]


async def test_commands_with_our_name_another_bots_and_unknown_ones(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], store={"path": "h.db"})
    await telegram.reply_to(f"@{BOT} remember me", **GROUP)  # type: ignore[arg-type]
    await telegram.send_message("/clear@other_bot", **GROUP)  # type: ignore[arg-type]
    await telegram.send_message("/nosuch", **GROUP)  # type: ignore[arg-type]
    unknown = await telegram.reply_to(f"/nosuch@{BOT}", **GROUP)  # type: ignore[arg-type]
    assert unknown.text == "I don't know the command /nosuch. /help lists what I can do."
    reply = await telegram.reply_to(f"@{BOT} still there?", **GROUP)  # type: ignore[arg-type]
    assert reply.text == "echo: Test: still there?"
    # Another bot's /clear did not wipe ours; unknown commands in groups are not answered,
    # except when addressed to us by name.
    assert user_texts(openai_server.last_chat_messages()) == [
        "Test: remember me",
        "Test: still there?",
    ]
    assert texts(telegram, -100) == [
        "echo: Test: remember me",
        "I don't know the command /nosuch. /help lists what I can do.",
        "echo: Test: still there?",
    ]
    mixed = await telegram.reply_to("/CLEAR@BotCore_Test_Bot", **GROUP)  # type: ignore[arg-type]
    assert mixed.text == "Done: I have forgotten our conversation."
    assert (await telegram.reply_to("/nosuch")).text.startswith("I don't know the command")


# --------------------------------------------------------------------------- bot.toml fuzzing


def _check_config_outcome(path: Path) -> None:
    """load_config either returns a Config or raises ConfigError with one line."""
    try:
        load_config(path, environ={"TELEGRAM_BOT_TOKEN": "123:abc", "OPENAI_API_KEY": "sk-x"})
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message, message


toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=20),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = ["bot", "openai", "plugins", "token", "plugins", "mode", "webhook", "breaker", "admins",
        "chat", "history", "model", "port", "url", "concurrency", "language", "x"]  # fmt: skip


def _toml(value: Any, path: list[str]) -> str:
    """A TOML document for a dict (tables for nested dicts, inline values otherwise)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, item in value.items():
        if isinstance(item, dict):
            tables.append((key, item))
        else:
            lines.append(f"{json.dumps(key)} = {_inline(item)}")
    for key, item in tables:
        lines.append(f"[{'.'.join(json.dumps(k) for k in [*path, key])}]")
        lines.append(_toml(item, [*path, key]))
    return "\n".join(lines)


def _inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_inline(v)}" for k, v in value.items()) + "}"


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(st.text(max_size=300))
def test_any_text_as_bot_toml(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bot.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _check_config_outcome(path)


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_as_bot_toml(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bot.toml"
    path.write_bytes(data)
    _check_config_outcome(path)


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), toml_values, max_size=5))
def test_arbitrary_toml_documents(tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / "bot.toml"
    path.write_text(_toml(document, []), encoding="utf-8", errors="surrogatepass")
    _check_config_outcome(path)


def _shipped() -> dict[str, Any]:
    return tomllib.loads((ROOT / "bot.toml").read_text(encoding="utf-8"))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


SHIPPED_PATHS = _paths(_shipped())


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(SHIPPED_PATHS),
            st.one_of(toml_values, st.just("__delete__"), st.sampled_from(KEYS)),
            st.booleans(),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutations_of_the_shipped_bot_toml(
    tmp_path: Path, mutations: list[tuple[tuple[Any, ...], Any, bool]]
) -> None:
    document = _shipped()
    for path, value, rename in mutations:
        parent: Any = document
        for part in path[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            last = path[-1]
            try:
                if value == "__delete__":
                    del parent[last]
                elif rename and isinstance(parent, dict) and isinstance(value, str):
                    parent[value + "_"] = parent.pop(last)  # a misspelled key
                else:
                    parent[last] = value
            except (KeyError, IndexError, TypeError):
                pass
    file = tmp_path / "bot.toml"
    file.write_text(_toml(document, []), encoding="utf-8", errors="surrogatepass")
    _check_config_outcome(file)


def test_the_shipped_bot_toml_is_valid() -> None:
    load_config(
        ROOT / "bot.toml", environ={"TELEGRAM_BOT_TOKEN": "123:abc", "OPENAI_API_KEY": "sk-x"}
    )


async def test_botcore_check_on_a_broken_file_prints_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from botcore.cli import main

    config = tmp_path / "bot.toml"
    config.write_text(
        '[bot]\ntoken = "1:a"\nplugins = [1, {x = nan}]\n[bot.webhook]\nport = 1e400\n'
    )
    assert main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("botcore: error: "), err
