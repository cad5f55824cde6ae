"""End-to-end tests of the fake Telegram Bot API, driven by the real python-telegram-bot."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import logging
import struct
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllGroupChats,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
    MessageEntity,
    Update,
)
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from botcore.testing.fake_telegram import (
    ANONYMOUS_ADMIN,
    FAKE_CHANNEL,
    MAX_DOWNLOAD,
    FakeTelegram,
)

TOKEN = "123456:TEST-TOKEN"


def png(width: int, height: int) -> bytes:
    """Just enough of a PNG (signature + IHDR) for the fake to read its size."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0" * 40


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url) as tg_bot:
        yield tg_bot


# --------------------------------------------------------------------------- a small real app

Ctx = ContextTypes.DEFAULT_TYPE
App = Application[Any, Any, Any, Any, Any, Any]


async def on_start(update: Update, context: Ctx) -> None:
    assert update.effective_message is not None and update.effective_user is not None
    await update.effective_message.reply_text(f"Hello, {update.effective_user.first_name}!")


async def on_text(update: Update, context: Ctx) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(f"echo: {update.effective_message.text}")


async def on_voice(update: Update, context: Ctx) -> None:
    message = update.effective_message
    assert message is not None and message.voice is not None
    data = await (await context.bot.get_file(message.voice.file_id)).download_as_bytearray()
    seconds = message.voice.to_dict()["duration"]
    await message.reply_text(f"voice {seconds}s {len(data)} bytes")


async def on_document(update: Update, context: Ctx) -> None:
    message = update.effective_message
    assert message is not None and message.document is not None
    data = await (await message.document.get_file()).download_as_bytearray()
    await message.reply_text(f"document {message.document.file_name} {bytes(data)!r}")


async def on_photo(update: Update, context: Ctx) -> None:
    message = update.effective_message
    assert message is not None
    largest = message.photo[-1]
    data = await (await largest.get_file()).download_as_bytearray()
    await message.reply_text(f"photo {largest.width}x{largest.height} {len(data)} bytes")


async def on_keyboard(update: Update, context: Ctx) -> None:
    message = update.effective_message
    assert message is not None
    await context.bot.send_chat_action(message.chat_id, "typing")
    buttons = [[InlineKeyboardButton("Yes", callback_data="yes")]]
    await message.reply_text("Sure?", reply_markup=InlineKeyboardMarkup(buttons))


async def on_button(update: Update, context: Ctx) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer(text="noted")
    await query.edit_message_text(f"pressed {query.data}")


async def on_stream(update: Update, context: Ctx) -> None:
    message = update.effective_message
    assert message is not None
    sent = await message.reply_text("…")
    for text in ("part 1", "part 1 2"):
        await asyncio.sleep(0.05)
        await sent.edit_text(text)


async def on_error(update: object, context: Ctx) -> None:
    context.bot_data.setdefault("errors", []).append(context.error)


@pytest.fixture
async def app(fake: FakeTelegram) -> AsyncIterator[App]:
    application = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .build()
    )
    application.add_handlers(
        [
            CommandHandler("start", on_start),
            CommandHandler("keyboard", on_keyboard),
            CommandHandler("stream", on_stream),
            MessageHandler(filters.TEXT & ~filters.COMMAND, on_text),
            MessageHandler(filters.VOICE, on_voice),
            MessageHandler(filters.Document.ALL, on_document),
            MessageHandler(filters.PHOTO, on_photo),
            CallbackQueryHandler(on_button),
        ]
    )
    application.add_error_handler(on_error)
    await application.initialize()
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=0.0, timeout=1)
    yield application
    await application.updater.stop()
    await application.stop()
    await application.shutdown()


# --------------------------------------------------------------------------- routing & protocol


async def test_get_me_routing_and_unknown_methods(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (123456, "botcore_test_bot", True)
    assert fake.calls("getMe")  # Bot.initialize called it

    with pytest.raises(InvalidToken, match="rejected by the server"):
        async with Bot("999:WRONG", base_url=fake.base_url):
            pass  # initialize() calls getMe, which must fail

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake.base_url}{TOKEN}/GETME") as resp:  # any case is fine
            assert resp.status == 200
            assert (await resp.json())["result"]["username"] == "botcore_test_bot"
        async with http.post(f"{fake.base_url}{TOKEN}/noSuchMethod") as resp:
            assert resp.status == 404
            assert await resp.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found: method not found",
            }
        async with http.get(f"{fake.base_file_url}999:WRONG/documents/x") as resp:
            assert resp.status == 401

    # A real Bot API method the fake does not model answers true instead of crashing.
    user_msg = await fake.send_message("hi")
    assert await bot.set_message_reaction(42, user_msg["message_id"], "👍") is True
    assert "setmessagereaction" in fake.unhandled_methods
    assert fake.calls("setMessageReaction")[0].params["reaction"] == [
        {"type": "emoji", "emoji": "👍"}
    ]


async def test_form_fields_are_decoded_by_name(fake: FakeTelegram, bot: Bot) -> None:
    user_msg = await fake.send_message("question")
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("A", callback_data="a")]])
    sent = await bot.send_message(
        42,
        "123",
        entities=[MessageEntity(MessageEntity.BOLD, 0, 3)],
        reply_markup=markup,
        disable_notification=True,
        reply_to_message_id=user_msg["message_id"],
    )
    call = fake.calls("sendmessage")[-1]
    assert call.params["text"] == "123"  # a numeric text stays a string
    assert call.params["chat_id"] == 42
    assert call.params["disable_notification"] is True
    assert call.params["entities"] == [{"type": "bold", "offset": 0, "length": 3}]
    assert call.params["reply_markup"] == markup.to_dict()
    for text in ("[1, 2]", "true", "-7"):
        await bot.send_message(42, text)
        assert fake.calls("sendMessage")[-1].params["text"] == text

    # PTB parsed the returned Message; ids share the per-chat counter with the user's message.
    assert sent.text == "123" and sent.message_id == user_msg["message_id"] + 1
    assert sent.reply_markup == markup
    assert sent.reply_to_message is not None and sent.reply_to_message.text == "question"
    record = fake.bot_messages(42)[0]
    assert record.reply_to_message_id == user_msg["message_id"]
    assert record.entities == [{"type": "bold", "offset": 0, "length": 3}]
    with pytest.raises(BadRequest, match=r"(?i)message to be replied not found"):
        await bot.send_message(42, "x", reply_to_message_id=999)


async def test_user_messages_get_utf16_entities(fake: FakeTelegram) -> None:
    data = await fake.send_message("/start@botcore_test_bot 😀 hi @botcore_test_bot!")
    message = Message.de_json(data, None)
    assert message is not None
    parsed = message.parse_entities()
    assert sorted(parsed.values()) == ["/start@botcore_test_bot", "@botcore_test_bot"]
    assert [e.type for e in message.entities] == ["bot_command", "mention"]
    assert message.entities[1].offset == 30  # the emoji counts as two UTF-16 code units

    group = await fake.send_message("hello", chat_id=-100, chat_type="group", user_id=7)
    assert group["chat"] == {"id": -100, "type": "group", "title": "Test Group -100"}
    assert group["from"]["id"] == 7 and "entities" not in group

    photo = await fake.send_photo(png(2, 2), caption="😀 @botcore_test_bot look")
    captioned = Message.de_json(photo, None)
    assert captioned is not None
    assert list(captioned.parse_caption_entities().values()) == ["@botcore_test_bot"]
    assert captioned.caption_entities[0].offset == 3
    plain = await fake.send_voice(b"x", kind="document", caption="no mention")
    assert "caption_entities" not in plain


async def test_messages_on_behalf_of_a_chat_and_edits_arrive_as_telegram_sends_them(
    fake: FakeTelegram, bot: Bot
) -> None:
    group = {"chat_id": -1001, "chat_type": "supergroup"}
    posted = await fake.send_message("as my channel", sender_chat=-1002, user_id=7, **group)
    anonymous = await fake.send_message("as the group", sender_chat=-1001, user_id=8, **group)
    with pytest.raises(ValueError, match="on behalf of a chat"):
        await fake.send_message("in private", sender_chat=-1002)
    edited = await fake.edit_message(posted, "/start edited")
    caption = await fake.edit_message(await fake.send_photo(png(2, 2), caption="a"), "b")

    updates = await bot.get_updates()
    first, second, third, fourth, fifth = updates  # the edit of `posted` before the photo
    assert first.message is not None and second.message is not None
    # Telegram's placeholders in `from`, the same for every channel and every anonymous admin.
    assert first.message.from_user is not None and first.message.from_user.id == FAKE_CHANNEL
    assert first.message.from_user.username == "Channel_Bot" and first.message.from_user.is_bot
    assert first.message.sender_chat is not None
    assert (first.message.sender_chat.id, first.message.sender_chat.type) == (-1002, "channel")
    assert second.message.from_user is not None
    assert second.message.from_user.id == ANONYMOUS_ADMIN
    assert second.message.sender_chat is not None and second.message.sender_chat.id == -1001
    assert anonymous["sender_chat"] == anonymous["chat"]  # the group itself
    # An edit is the whole message again: same id and date, the new text, an edit_date.
    assert third.message is None and third.edited_message is not None
    assert third.edited_message.message_id == posted["message_id"]
    assert third.edited_message.date == first.message.date
    assert third.edited_message.text == "/start edited" == edited["text"]
    assert third.edited_message.entities[0].type == "bot_command"
    assert third.edited_message.sender_chat is not None
    assert third.edited_message.edit_date is not None
    assert fourth.message is not None and fourth.message.caption == "a"
    assert fifth.edited_message is not None and fifth.edited_message.caption == caption["caption"]
    assert fifth.edited_message.caption == "b" and fifth.edited_message.photo


# --------------------------------------------------------------------------- validation


async def test_text_and_entity_validation(fake: FakeTelegram, bot: Bot) -> None:
    ok = await bot.send_message(42, "😀 bold", entities=[MessageEntity("bold", 3, 4)])
    assert ok.parse_entities() == {MessageEntity("bold", 3, 4): "bold"}
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(42, "😀 bold", entities=[MessageEntity("bold", 3, 5)])

    await bot.send_message(42, "😀" * 2048)  # exactly 4096 UTF-16 code units
    with pytest.raises(BadRequest, match=r"(?i)^message is too long"):
        await bot.send_message(42, "😀" * 2049)
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(42, "")
    with pytest.raises(BadRequest, match=r"(?i)message caption is too long"):
        await bot.send_photo(42, png(2, 2), caption="x" * 1025)
    assert [(m.text or "")[:1] for m in fake.bot_messages(42)] == ["😀", "😀"]
    assert [c.status for c in fake.calls("sendMessage")] == [200, 400, 200, 400, 400]


async def test_entities_past_the_100th_are_dropped_as_telegram_does(
    fake: FakeTelegram, bot: Bot
) -> None:
    text = " ".join(f"w{i}" for i in range(150))
    bold = [MessageEntity("bold", text.index(f"w{i} "), 2) for i in range(120)]
    sent = await bot.send_message(42, text, entities=bold[::-1])  # in any order
    assert sent.text == text  # accepted, the text whole
    assert [e.offset for e in sent.entities] == [e.offset for e in bold[:100]]
    assert len(fake.bot_messages(42)[0].entities) == 100
    html = await bot.send_message(42, "<b>x</b> " * 101, parse_mode="HTML")
    assert len(html.entities) == 100


async def test_parse_modes_are_checked(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(42, "*bold* text\\.", parse_mode="MarkdownV2")
    assert sent.text == "bold text."
    assert sent.entities == (MessageEntity("bold", 0, 4),)
    record = fake.bot_messages(42)[0]
    assert (record.text, record.plain, record.parse_mode) == (
        "*bold* text\\.",
        "bold text.",
        "MarkdownV2",
    )
    code = await bot.send_message(42, "```python\nprint('.')\n```", parse_mode="MarkdownV2")
    assert code.text == "print('.')\n" and code.entities[0].language == "python"
    with pytest.raises(BadRequest, match=r"(?i)character '\.' is reserved"):
        await bot.send_message(42, "Hello.", parse_mode="MarkdownV2")
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities: can't find end"):
        await bot.send_message(42, "*unclosed", parse_mode="MarkdownV2")

    html = await bot.send_message(
        42, '<b>hi</b> &lt;3 <a href="https://x.org">link</a>', parse_mode="HTML"
    )
    assert html.text == "hi <3 link"
    assert html.parse_entities() == {
        MessageEntity("bold", 0, 2): "hi",
        MessageEntity("text_link", 6, 4, url="https://x.org"): "link",
    }
    with pytest.raises(BadRequest, match=r"(?i)can't find end tag"):
        await bot.send_message(42, "<b>hi", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r'(?i)unsupported start tag "foo"'):
        await bot.send_message(42, "<foo>x</foo>", parse_mode="HTML")


async def test_edits_and_deletes(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(42, "v1")
    edited = await bot.edit_message_text("v2", chat_id=42, message_id=sent.message_id)
    assert isinstance(edited, Message) and edited.text == "v2" and edited.edit_date is not None
    record = fake.bot_messages(42)[0]
    assert (record.text, record.edits) == ("v2", ["v2"])
    with pytest.raises(BadRequest, match=r"(?i)message is not modified: specified new message"):
        await bot.edit_message_text("v2", chat_id=42, message_id=sent.message_id)
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("B", callback_data="b")]])
    await bot.edit_message_reply_markup(42, sent.message_id, reply_markup=markup)
    assert record.reply_markup == markup.to_dict() and record.edits == ["v2"]
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_reply_markup(42, sent.message_id, reply_markup=markup)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=42, message_id=999)

    photo = await bot.send_photo(42, png(4, 3), caption="c1")
    await bot.edit_message_caption(42, photo.message_id, caption="c2")
    assert fake.bot_messages(42)[1].edits == ["c2"]
    with pytest.raises(BadRequest, match=r"(?i)no text in the message"):
        await bot.edit_message_text("x", chat_id=42, message_id=photo.message_id)

    user_msg = await fake.send_message("mine")
    with pytest.raises(BadRequest, match=r"(?i)message can't be edited"):
        await bot.edit_message_text("x", chat_id=42, message_id=user_msg["message_id"])

    assert await bot.delete_message(42, sent.message_id) is True
    assert record.deleted
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot.delete_message(42, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("v3", chat_id=42, message_id=sent.message_id)


# --------------------------------------------------------------------------- files


async def test_bot_media_uploads_and_downloads(fake: FakeTelegram, bot: Bot) -> None:
    image = png(3, 2)
    sent = await bot.send_photo(42, image, caption="a <b>pic</b>", parse_mode="HTML")
    assert fake.calls("sendPhoto")[0].files == {"photo": image}
    assert (sent.photo[-1].width, sent.photo[-1].height) == (3, 2)
    assert sent.caption == "a pic" and sent.caption_entities[0].type == "bold"
    record = fake.bot_messages(42)[0]
    assert (record.kind, record.data, record.text) == ("photo", image, "a <b>pic</b>")
    downloaded = await (await bot.get_file(sent.photo[-1].file_id)).download_as_bytearray()
    assert bytes(downloaded) == image

    again = await bot.send_photo(42, sent.photo[-1].file_id)
    assert fake.bot_messages(42)[1].data is None
    assert fake.bot_messages(42)[1].media_ref == sent.photo[-1].file_id
    assert again.photo[-1].file_unique_id == sent.photo[-1].file_unique_id
    await bot.send_photo(42, "https://example.org/cat.png")
    assert fake.bot_messages(42)[2].media_ref == "https://example.org/cat.png"
    with pytest.raises(BadRequest, match=r"(?i)wrong file identifier"):
        await bot.send_photo(42, "no-such-file-id")

    voice = await bot.send_voice(42, b"OggS-voice", duration=3)
    assert voice.voice is not None and voice.voice.to_dict()["duration"] == 3
    doc = await bot.send_document(42, b"%PDF-1.4", filename="report.pdf")
    assert doc.document is not None and doc.document.file_name == "report.pdf"
    assert doc.document.mime_type == "application/pdf" and doc.document.file_size == 8
    audio = await bot.send_audio(42, b"ID3-audio", duration=5, title="Song")
    assert audio.audio is not None and audio.audio.title == "Song"
    assert [m.kind for m in fake.bot_messages(42)][3:] == ["voice", "document", "audio"]

    album = await bot.send_media_group(42, [InputMediaPhoto(png(5, 5)), InputMediaPhoto(image)])
    assert len(album) == 2 and album[0].media_group_id == album[1].media_group_id
    assert fake.bot_messages(42)[-1].data == image  # sent via attach://
    assert str(fake.calls("sendMediaGroup")[0].params["media"][0]["media"]).startswith("attach://")


async def test_add_file_and_size_limit(fake: FakeTelegram, bot: Bot) -> None:
    file_id, unique_id = fake.add_file(b"hello", file_path_suffix=".txt")
    tg_file = await bot.get_file(file_id)
    assert tg_file.file_unique_id == unique_id and tg_file.file_size == 5
    assert tg_file.file_path is not None and tg_file.file_path.endswith(".txt")
    assert bytes(await tg_file.download_as_bytearray()) == b"hello"
    big_id, _ = fake.add_file(bytes(MAX_DOWNLOAD + 1))
    with pytest.raises(BadRequest, match=r"(?i)file is too big"):
        await bot.get_file(big_id)
    with pytest.raises(BadRequest, match=r"(?i)invalid file_id"):
        await bot.get_file("nope")


# --------------------------------------------------------------------------- the real Application


async def test_app_commands_text_and_groups(fake: FakeTelegram, app: App) -> None:
    reply = await fake.reply_to("/start", first_name="Ada")
    assert (reply.chat_id, reply.text, reply.kind) == (42, "Hello, Ada!", "text")
    assert reply.message_id == 2  # user message 1, bot reply 2: one counter per chat
    assert (await fake.reply_to("hello there")).text == "echo: hello there"

    # Groups: /cmd@this_bot reaches the bot, and the reply quotes the user's message.
    sent = await fake.send_message("/start@botcore_test_bot", chat_id=-100, chat_type="group")
    group_reply = await fake.next_message(-100)
    assert group_reply.text == "Hello, Test!"
    assert group_reply.reply_to_message_id == sent["message_id"]
    await fake.send_message("/start@other_bot", chat_id=-100, chat_type="group")
    with pytest.raises(AssertionError, match="no new bot message in chat -100") as info:
        await fake.next_message(-100, timeout=0.3)
    assert "Hello, Test!" in str(info.value)  # the dump shows what the bot did send

    streamed = await fake.reply_to("/stream", settle=0.2)
    assert (streamed.text, streamed.edits) == ("part 1 2", ["part 1", "part 1 2"])


async def test_app_user_media(fake: FakeTelegram, app: App) -> None:
    await fake.send_voice(b"OggS" + b"\0" * 96, duration=2)
    assert (await fake.next_message(42)).text == "voice 2s 100 bytes"
    await fake.send_voice(b"notes", kind="document", file_name="a.txt", mime_type="text/plain")
    assert (await fake.next_message(42)).text == "document a.txt b'notes'"
    photo = await fake.send_photo(png(640, 480), caption="look")
    assert len(photo["photo"]) == 2 and photo["photo"][0]["width"] < 640
    assert (await fake.next_message(42)).text == f"photo 640x480 {len(png(1, 1))} bytes"


async def test_app_buttons_chat_actions_and_errors(
    fake: FakeTelegram,
    app: App,
) -> None:
    question = await fake.reply_to("/keyboard")
    assert question.text == "Sure?" and [b["text"] for b in question.buttons] == ["Yes"]
    assert fake.chat_actions == [(42, "typing")]
    await fake.send_callback_query(question, button_text="Yes")
    await fake.wait_for(lambda: bool(question.edits))
    assert question.text == "pressed yes" and question.reply_markup is None
    assert fake.callback_answers[0]["text"] == "noted"

    fake.fail("sendMessage", status=403)
    await fake.send_message("hello")
    # The error handler records without calling the API: re-check periodically too.
    await fake.wait_for(lambda: bool(app.bot_data.get("errors")), poll_interval=0.01)
    assert isinstance(app.bot_data["errors"][0], Forbidden)
    assert "blocked by the user" in str(app.bot_data["errors"][0])
    assert (await fake.reply_to("again")).text == "echo: again"  # only one call failed


# --------------------------------------------------------------------------- getUpdates & webhook


async def test_get_updates_long_poll_offsets_and_conflict(fake: FakeTelegram, bot: Bot) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    await fake.send_message("first")
    updates = await poll
    assert time.monotonic() - started < 2  # answered as soon as the update arrived
    assert [u.message.text for u in updates if u.message] == ["first"]

    started = time.monotonic()
    empty = await bot.get_updates(
        offset=updates[-1].update_id + 1, timeout=dtm.timedelta(seconds=0.3)
    )
    assert empty == () and time.monotonic() - started >= 0.25

    for text in ("a", "b", "c"):
        await fake.send_message(text)
    batch = await bot.get_updates(limit=2)
    assert [u.message.text for u in batch if u.message] == ["a", "b"]
    rest = await bot.get_updates(offset=batch[-1].update_id + 1)
    assert [u.message.text for u in rest if u.message] == ["c"]

    # Opt-in update kinds are not delivered by default; raw updates keep their ids.
    await fake.send_update({"message_reaction": {"chat": {"id": 42, "type": "private"}}})
    edited = await fake.send_update(
        {
            "edited_message": {
                "message_id": 1,
                "date": 0,
                "edit_date": 1,
                "chat": {"id": 42, "type": "private"},
                "text": "edited",
            }
        }
    )
    got = await bot.get_updates(offset=rest[-1].update_id + 1)
    assert [u.update_id for u in got] == [edited["update_id"]]
    assert got[0].edited_message is not None and got[0].edited_message.text == "edited"

    # A second getUpdates (here from a plain HTTP client: PTB's own getUpdates connection pool
    # has a single connection) terminates the first one, like Telegram does.
    first = asyncio.create_task(bot.get_updates(offset=edited["update_id"] + 1, timeout=3))
    await asyncio.sleep(0.1)
    async with aiohttp.ClientSession() as http:
        second = asyncio.create_task(
            http.post(f"{fake.base_url}{TOKEN}/getUpdates", data={"timeout": "3"})
        )
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await first
        await fake.send_message("for the second poller")
        async with await second as resp:
            body = await resp.json()
    assert [u["message"]["text"] for u in body["result"]] == ["for the second poller"]


async def test_webhook_delivery_with_secret_and_retries(fake: FakeTelegram, bot: Bot) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(
            (request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json())
        )
        return web.Response(status=500 if len(received) == 1 else 200)

    hook_app = web.Application()
    hook_app.router.add_post("/hook", hook)
    runner = web.AppRunner(hook_app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        await fake.send_message("stale")
        url = f"http://127.0.0.1:{port}/hook"
        assert await bot.set_webhook(url, secret_token="s3cret", drop_pending_updates=True)
        assert fake.webhook is not None and fake.webhook["secret_token"] == "s3cret"
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates()

        await fake.send_message("via hook")
        await fake.wait_for(lambda: fake.webhook_deliveries == [500, 200])
        assert [secret for secret, _ in received] == ["s3cret", "s3cret"]
        assert received[0][1] == received[1][1]  # the same update, retried
        assert received[1][1]["message"]["text"] == "via hook"  # "stale" was dropped
        info = await bot.get_webhook_info()
        assert info.url == url and info.pending_update_count == 0
        assert info.last_error_message is not None and "500" in info.last_error_message

        assert await bot.delete_webhook()
        assert (await bot.get_webhook_info()).url == ""
        assert not fake.webhook  # back to None
        await fake.send_message("polled again")
        updates = await bot.get_updates()
        assert [u.message.text for u in updates if u.message] == ["polled again"]
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- bot state & faults


async def test_commands_descriptions_and_callback_validation(fake: FakeTelegram, bot: Bot) -> None:
    await bot.set_my_commands([("start", "Start"), ("help", "Help")])
    await bot.set_my_commands([BotCommand("hilfe", "Hilfe")], language_code="de")
    await bot.set_my_commands([("stats", "Stats")], scope=BotCommandScopeAllGroupChats())
    assert fake.commands == {
        ("default", None): [
            {"command": "start", "description": "Start"},
            {"command": "help", "description": "Help"},
        ],
        ("default", "de"): [{"command": "hilfe", "description": "Hilfe"}],
        ("all_group_chats", None): [{"command": "stats", "description": "Stats"}],
    }
    assert await bot.get_my_commands(language_code="de") == (BotCommand("hilfe", "Hilfe"),)
    await bot.delete_my_commands(language_code="de")
    assert ("default", "de") not in fake.commands
    assert await bot.get_my_commands(language_code="de") == ()
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([("Bad-Cmd", "x")])

    assert await bot.set_my_description("A bot", language_code="en")
    assert (await bot.get_my_description(language_code="en")).description == "A bot"
    assert await bot.set_my_short_description("Short")
    with pytest.raises(BadRequest, match=r"(?i)query id is invalid"):
        await bot.answer_callback_query("123")
    assert await bot.close() is True and await bot.log_out() is True


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_fault_injection_and_latency(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail("sendMessage", status=429, retry_after=3)
    with pytest.raises(RetryAfter, match="Retry in 3 seconds"):
        await bot.send_message(42, "x")
    failed = fake.calls("sendMessage")[0]
    assert failed.status == 429 and failed.response["parameters"] == {"retry_after": 3}
    assert failed.response["description"] == "Too Many Requests: retry after 3"
    assert fake.bot_messages(42) == []  # nothing was "sent"
    await bot.send_message(42, "x")
    assert len(fake.bot_messages(42)) == 1

    fake.fail("SENDMESSAGE", status=400, times=2, when=lambda call: call.params["chat_id"] == 7)
    await bot.send_message(8, "other chat is unaffected")
    for _ in range(2):
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
            await bot.send_message(7, "x")
    await bot.send_message(7, "third time works")
    assert [m.text for m in fake.bot_messages(7)] == ["third time works"]

    fake.fail("getMe", status=502, description="Bad Gateway")
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.get_me()

    fake.latency = 0.2
    started = time.monotonic()
    await bot.send_chat_action(42, "typing")
    assert time.monotonic() - started >= 0.2
    assert fake.chat_actions == [(42, "typing")]


async def test_next_message_cursor_and_wait_for(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(42, "one")
    await bot.send_message(42, "two")
    assert (await fake.next_message(42)).text == "one"
    assert (await fake.next_message(42)).text == "two"
    with pytest.raises(AssertionError, match="'two'") as info:
        await fake.next_message(42, timeout=0.1)
    assert "sendMessage" in str(info.value)  # the dump lists recent API calls

    waiter = asyncio.create_task(fake.wait_for(lambda: len(fake.bot_messages(42)) == 3))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await bot.send_message(42, "three")
    await asyncio.wait_for(waiter, 1)
    with pytest.raises(AssertionError, match="condition not met"):
        await fake.wait_for(lambda: False, timeout=0.1)


async def test_token_is_never_logged(
    fake: FakeTelegram, bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.fail("sendMessage", status=400)
    with pytest.raises(BadRequest):
        await bot.send_message(42, "x")
    assert await bot.set_chat_title(42, "t") is True
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("botcore", "aiohttp"))]
    assert any("setChatTitle" in line for line in ours) and any("400" in line for line in ours)
    assert not any(TOKEN in line for line in ours)


async def test_standalone_server_and_control_api() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "botcore.testing.fake_telegram", "--port", "0", "--token", "1:T",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        url = line.split(" on ")[1].split()[0]
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/_fake/send_message", json={"text": "bench"}) as resp:
                assert (await resp.json())["result"]["text"] == "bench"
            async with http.post(f"{url}/bot1:T/getUpdates", data={"timeout": "0"}) as resp:
                body = json.loads(await resp.read())
            assert body["result"][0]["message"]["text"] == "bench"
    finally:
        proc.terminate()
        await proc.wait()


async def test_disconnect_drops_the_connection_without_effect(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail("sendMessage", disconnect=True)
    with pytest.raises(NetworkError):
        await bot.send_message(42, "lost")
    dropped = fake.calls("sendMessage")[0]
    assert dropped.status == 0 and dropped.response is None
    assert fake.bot_messages(42) == []
    await bot.send_message(42, "next one goes through")
    assert [m.text for m in fake.bot_messages(42)] == ["next one goes through"]


async def test_raw_updates_carry_lone_surrogates_as_json_escapes(
    fake: FakeTelegram, bot: Bot
) -> None:
    await fake.send_message("broken \ud83d pair")
    updates = await bot.get_updates(timeout=0)
    assert updates[0].message is not None and updates[0].message.text == "broken \ud83d pair"


async def test_concurrent_set_webhooks_leave_one_sender(fake: FakeTelegram, bot: Bot) -> None:
    url = "http://127.0.0.1:9/hook"  # never reached: no update is waiting

    def senders() -> list[asyncio.Task[Any]]:
        return [
            t
            for t in asyncio.all_tasks()
            if getattr(t.get_coro(), "__qualname__", "") == "FakeTelegram._deliver_webhooks"
        ]

    assert await bot.set_webhook(url)
    await asyncio.gather(bot.set_webhook(url), bot.set_webhook(url), bot.set_webhook(url))
    assert len(senders()) == 1
    assert await bot.delete_webhook()
    assert senders() == []


async def test_entity_types_are_the_bot_apis(fake: FakeTelegram, bot: Bot) -> None:
    # A collapsed quote (what reasoning is shown in) is kept; a type the Bot API lacks is refused.
    sent = await bot.send_message(
        42, "thinking\n\nanswer", entities=[MessageEntity("expandable_blockquote", 0, 8)]
    )
    assert sent.entities[0].type == MessageEntity.EXPANDABLE_BLOCKQUOTE
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(42, "thinking", entities=[MessageEntity("collapsed_quote", 0, 8)])
