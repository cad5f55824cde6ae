"""Vision end to end: photos and image files reach the model as image parts, and follow-ups see them."""

from __future__ import annotations

import asyncio
import base64
import io
import signal
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from botcore_chat import estimate_tokens
from PIL import Image

from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness

CHAT = {"stream": False, "model": "text-model", "vision_model": "vision-model"}
SETTINGS: dict[str, Any] = {"history": {}, "chat": CHAT}


def image(width: int, height: int, fmt: str = "JPEG", **save: Any) -> bytes:
    """A real image with some detail (a gradient), encoded by Pillow."""
    picture = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **save)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims to be this large, with no pixels behind the claim."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + tag + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def sparse_png(side: int) -> bytes:
    """A real 1-bit PNG of side x side, all white: a few KB that unpack to side**2 bytes."""
    buffer = io.BytesIO()
    Image.new("1", (side, side), 1).save(buffer, "PNG")
    return buffer.getvalue()


def peak_rss(pid: int) -> int:
    """The process's peak resident memory in bytes (Linux: VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(
        int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")
    )


def image_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return [p for p in content if p["type"] == "image_url"] if isinstance(content, list) else []


def decoded(part: dict[str, Any]) -> Image.Image:
    url = part["image_url"]["url"]
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    picture = Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :])))
    assert picture.format == "JPEG"
    return picture


async def test_a_photo_and_a_follow_up_question(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings=SETTINGS)
    openai_server.script_chat("A grey gradient.", "It gets lighter to the right.")
    await telegram.send_photo(image(1600, 1200), caption="What is this?")
    assert (await telegram.next_message(42)).text == "A grey gradient."
    request = openai_server.chat_requests[-1]
    assert request["model"] == "vision-model"
    user = request["messages"][-1]
    assert user["role"] == "user" and user["content"][0] == {
        "type": "text",
        "text": "What is this?",
    }
    [part] = image_parts(user)
    assert "detail" not in part["image_url"]
    assert decoded(part).size == (1024, 768)  # downscaled to vision_side

    reply = await telegram.reply_to("Which way does it get lighter?")
    assert reply.text == "It gets lighter to the right."
    request = openai_server.chat_requests[-1]
    assert request["model"] == "vision-model"  # the context holds an image
    earlier, answer, question = request["messages"][1:]
    assert earlier["content"][0] == {"type": "text", "text": "What is this?"}
    [kept] = image_parts(earlier)
    assert kept["image_url"]["detail"] == "low"
    assert decoded(kept).size == (512, 384)  # the smaller copy the history keeps
    assert answer == {"role": "assistant", "content": "A grey gradient."}
    assert question == {"role": "user", "content": "Which way does it get lighter?"}


async def test_text_alone_goes_to_the_chat_model(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat"], settings=SETTINGS)
    await telegram.reply_to("hello")
    assert openai_server.chat_requests[-1]["model"] == "text-model"


async def test_only_the_newest_images_go_with_a_request(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    settings = {"history": {}, "chat": {**CHAT, "vision_history_images": 1}}
    await start_bot(["history", "chat"], settings=settings)
    for caption in ("first", "second"):
        await telegram.send_photo(image(64, 64), caption=caption)
        await telegram.next_message(42)
    await telegram.reply_to("compare them")
    users = [m for m in openai_server.last_chat_messages() if m["role"] == "user"]
    assert users[0]["content"] == [
        {"type": "text", "text": "first"},
        {"type": "text", "text": "[image]"},
    ]
    assert len(image_parts(users[1])) == 1 and users[1]["content"][0]["text"] == "second"


async def test_a_photo_without_caption_and_image_files(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings={"chat": {"stream": False}})
    await telegram.send_photo(image(300, 200))
    await telegram.next_message(42)
    [user] = openai_server.last_chat_messages()[1:]
    assert [p["type"] for p in user["content"]] == ["image_url"]
    assert openai_server.chat_requests[-1]["model"] == "gpt-4o-mini"  # vision_model unset

    for fmt, mime, name in (
        ("PNG", "image/png", "shot.png"),
        ("WEBP", "image/webp", "pic.webp"),
        ("GIF", "image/gif", "anim.gif"),
    ):
        await telegram.send_voice(
            image(100, 50, fmt), kind="document", mime_type=mime, file_name=name, caption=name
        )
        await telegram.next_message(42)
        user = openai_server.last_chat_messages()[-1]
        assert user["content"][0]["text"] == name
        assert decoded(image_parts(user)[0]).size == (100, 50)


async def test_transparent_png_is_flattened_on_white(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings={"chat": {"stream": False}})
    clear = io.BytesIO()
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(clear, "PNG")
    await telegram.send_voice(
        clear.getvalue(), kind="document", mime_type="image/png", file_name="clear.png"
    )
    await telegram.next_message(42)
    pixel = decoded(image_parts(openai_server.last_chat_messages()[-1])[0]).getpixel((10, 10))
    assert isinstance(pixel, tuple) and min(pixel) > 240


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # the bomb is refused
async def test_unusable_images_get_clear_messages(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings={"chat": {"stream": False, "vision_max_mb": 0.05}})
    formats = "I can look at JPEG, PNG, WebP and GIF images. "
    cases: list[tuple[bytes, str, str, str]] = [
        (image(10, 10, "BMP"), "image/bmp", "old.bmp", formats),
        (image(10, 10, "TIFF"), "image/tiff", "scan.tiff", formats),
        # A BMP that claims to be a PNG is found out by its content.
        (image(10, 10, "BMP"), "image/png", "liar.png", formats),
        (b"not an image at all", "image/jpeg", "broken.jpg", "I could not read this image."),
        # Refused from its header, before 100 megapixels are decoded.
        (png_header(10_000, 10_000), "image/png", "bomb.png", "The image is too large: at most 50"),
        # Past Pillow's own bomb guard (DecompressionBombError): the same message.
        (png_header(20_000, 20_000), "image/png", "huge.png", "The image is too large: at most 50"),
    ]
    for data, mime, name, expected in cases:
        await telegram.send_voice(data, kind="document", mime_type=mime, file_name=name)
        reply = await telegram.next_message(42)
        assert reply.text and reply.text.startswith(expected), (name, reply.text)

    noisy = Image.effect_noise((400, 400), 100).convert("RGB")
    big = io.BytesIO()
    noisy.save(big, "PNG")
    assert len(big.getvalue()) > 0.05 * 1024 * 1024
    await telegram.send_photo(big.getvalue())
    assert (await telegram.next_message(42)).text == "The image is too big: at most 0.05 MB."
    await telegram.send_photo(big.getvalue(), language_code="ru")
    assert (await telegram.next_message(42)).text == "Картинка слишком большая: не больше 0.05 МБ."
    assert openai_server.chat_requests == []


async def test_an_oversized_file_is_refused_before_it_is_downloaded(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings={"chat": {"stream": False, "vision_max_mb": 20}})
    message = await telegram.send_voice(
        image(10, 10), kind="document", mime_type="image/jpeg", file_name="a.jpg"
    )
    assert message["document"]["file_size"] < 1024
    assert (await telegram.next_message(42)).text == "echo:"
    huge = {**message, "message_id": 99}
    huge["document"] = {**message["document"], "file_size": 21 * 1024 * 1024}
    await telegram.send_update({"message": huge})
    assert (await telegram.next_message(42)).text == "The image is too big: at most 20 MB."
    assert len(telegram.calls("getFile")) == 1  # only the small one
    assert len(openai_server.chat_requests) == 1  # only the small one


async def test_animated_stickers_are_refused_and_static_ones_seen(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings={"chat": {"stream": False}})
    static = image(512, 512, "WEBP")
    for number, (data, animated) in enumerate(((b"\x1f\x8b lottie", True), (static, False))):
        file_id, unique = telegram.add_file(data, file_path_suffix=".webp")
        sticker = {
            "file_id": file_id,
            "file_unique_id": unique,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": animated,
            "is_video": False,
            "file_size": len(data),
        }
        user = {"id": 42, "is_bot": False, "first_name": "Test", "language_code": "en"}
        await telegram.send_update(
            {
                "message": {
                    "message_id": 500 + number,
                    "date": int(time.time()),
                    "chat": {"id": 42, "type": "private", "first_name": "Test"},
                    "from": user,
                    "sticker": sticker,
                }
            }
        )
        reply = await telegram.next_message(42)
        if animated:
            assert reply.text == (
                "I can't look at animated stickers. Send a picture or a regular sticker."
            )
            assert openai_server.chat_requests == []
        else:
            assert reply.text == "echo:"
            assert decoded(image_parts(openai_server.last_chat_messages()[-1])[0]).size == (
                512,
                512,
            )


async def test_groups_follow_the_groups_rule(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings={"chat": {"stream": False}})
    group: dict[str, Any] = {"chat_id": -100, "chat_type": "group", "first_name": "Ann"}
    await telegram.send_photo(image(32, 32), caption="just sharing", **group)
    await telegram.send_photo(image(32, 32), caption="@botcore_test_bot what is it?", **group)
    reply = await telegram.next_message(-100)
    assert reply.text == "echo: Ann: what is it?"
    assert len(openai_server.chat_requests) == 1


async def test_vision_off(start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI) -> None:
    await start_bot(["chat"], settings={"chat": {"vision": False}})
    await telegram.send_photo(image(32, 32), caption="what is it?")
    assert (await telegram.next_message(42)).text == (
        "I can't look at images here; please describe it in words."
    )
    assert openai_server.chat_requests == []


def test_images_count_as_the_api_bills_them() -> None:
    def user(*parts: dict[str, Any]) -> dict[str, Any]:
        return {"role": "user", "content": list(parts)}

    def part(data: bytes, **extra: str) -> dict[str, Any]:
        url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
        return {"type": "image_url", "image_url": {"url": url, **extra}}

    low = part(image(3000, 3000), detail="low")
    assert estimate_tokens(user(low)) == 85 + 4
    assert estimate_tokens(user(part(image(1024, 768)))) == 85 + 170 * 4 + 4
    assert estimate_tokens(user(part(image(2048, 768)))) == 85 + 170 * 8 + 4
    assert estimate_tokens(user(part(image(300, 200)))) == 85 + 170 + 4
    unreadable = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    assert estimate_tokens(user(unreadable)) == 765 + 4
    text = {"type": "text", "text": "x" * 300}
    assert estimate_tokens(user(text, low)) == 100 + 85 + 4


async def test_a_rotated_camera_photo_is_sent_upright(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings={"chat": {"stream": False}})
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was held sideways
    await telegram.send_voice(
        image(200, 100, exif=exif.tobytes()),
        kind="document",
        mime_type="image/jpeg",
        file_name="camera.jpg",
    )
    await telegram.next_message(42)
    sent = decoded(image_parts(openai_server.last_chat_messages()[-1])[0])
    assert sent.size == (100, 200)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
async def test_images_that_unpack_huge_keep_the_bot_s_memory_bounded(
    telegram: FakeTelegram, openai_server: FakeOpenAI, bot_harness: BotHarness, bot_output
) -> None:
    """The real `botcore run`: eight 7000 x 7000 1-bit PNGs (a few KB each, 49 MB each decoded)
    at once get the size message from their header; eight 5500 x 5500 ones, inside the decoding
    budget, are decoded two at a time. The process's peak memory grows by about two budgets,
    not by eight decoded images (before: +1.6 GB)."""
    from plugins.chat import vision

    config = bot_harness.write_config(
        "bot.toml", ["chat"], bot={"poll_timeout": 5}, settings={"chat": {"stream": False}}
    )
    bot = await bot_harness.spawn(
        config, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        await telegram.send_photo(image(64, 64), user_id=1)  # Pillow and the SDK are loaded
        await telegram.next_message(1, timeout=30)
        before = peak_rss(bot.pid)
        bomb, big = sparse_png(7000), sparse_png(5500)
        assert len(bomb) < 32 * 1024
        for user in range(100, 108):
            await telegram.send_voice(
                bomb, kind="document", mime_type="image/png", file_name="scan.png", user_id=user
            )
        for user in range(200, 208):
            await telegram.send_voice(
                big, kind="document", mime_type="image/png", file_name="page.png", user_id=user
            )
        for user in range(100, 108):
            reply = await telegram.next_message(user, timeout=60)
            assert reply.text == "The image is too large: at most 41 megapixels.", reply.text
        for user in range(200, 208):
            await telegram.next_message(user, timeout=60)
        assert len(openai_server.chat_requests) == 1 + 8  # the warm-up and the eight pages
        grown = peak_rss(bot.pid) - before
    finally:
        bot.send_signal(signal.SIGTERM)
        await bot.wait()
        bot_output((await bot.stderr.read()).decode() if bot.stderr else "")
    bound = vision.DECODERS * vision.DECODE_BUDGET * 3 // 2
    assert grown < bound, f"peak memory grew by {grown // 2**20} MB"
