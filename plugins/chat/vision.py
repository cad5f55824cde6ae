"""chat vision: photos and image files (with their caption) go to the model as image parts.

Pillow checks and re-encodes every image: the model gets a JPEG data URL whose longest side is at
most `vision_side` px. The history keeps a smaller copy (`vision_history_side` px) marked
`"detail": "low"`, which OpenAI bills at a flat 85 tokens, so a follow-up question still sees the
picture while the stored conversation stays small; a request carries at most
`vision_history_images` earlier images, older ones become the text "[image]".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from botcore import ChatMessage, Turn, UserError

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from . import Settings

log = logging.getLogger(__name__)

KINDS = frozenset({"photo", "document", "sticker"})
"""Message kinds that may carry an image."""
READABLE = {"JPEG", "PNG", "WEBP", "GIF"}
"""Pillow format names the vision models accept (of an animated GIF or WebP, the first frame)."""
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic"}
MAX_PIXELS = 50_000_000
"""Larger images are refused before they are decoded (a decompression bomb guard)."""
DECODE_BUDGET = 80 * 1024 * 1024
"""Bytes one image may take at full size (decoded, converted, premultiplied): checked from the
header, so a tiny file that unpacks to a huge 1-bit or palette frame is refused, not decoded.
That is 20 megapixels of RGB, 10 of RGBA, 40 of 1-bit (JPEGs count at their draft scale)."""
PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
"""Bytes a pixel takes in Pillow's memory, by mode (every other mode takes 4, RGB included)."""
DECODERS = 2
"""Images decoded at once, whatever the number of turns: bounds their memory together."""
_DECODING = ThreadPoolExecutor(max_workers=DECODERS, thread_name_prefix="chat-vision")
"""Image work waits here rather than in the shared default pool, which other work needs too."""
LOW_DETAIL_TOKENS = 85
"""What OpenAI bills for an image at "detail": "low", whatever its size."""
PLACEHOLDER = "[image]"
DATA_URL = "data:image/jpeg;base64,"


@dataclass(frozen=True)
class Picture:
    """An image ready for the model: the part to send now and the smaller part to remember."""

    now: dict[str, Any]
    kept: dict[str, Any]


class _Refused(Exception):
    """The image cannot be used; `key` names the text that says why."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


def _source(turn: Turn) -> tuple[str, int | None] | None:
    """(file_id, size) of the image a message carries, None if it carries none; refuses the ones
    that are images but cannot be read (animated stickers, BMP/TIFF files)."""
    message = turn.message
    if turn.kind == "photo" and message.photo:
        return message.photo[-1].file_id, message.photo[-1].file_size
    if turn.kind == "sticker" and message.sticker:
        sticker = message.sticker
        if sticker.is_animated or sticker.is_video:
            raise _Refused("chat.image_animated")
        return sticker.file_id, sticker.file_size
    document = message.document
    if turn.kind == "document" and document:
        mime = (document.mime_type or "").lower()
        suffix = PurePosixPath(document.file_name or "").suffix.lower()
        if not mime.startswith("image/") and suffix not in IMAGE_EXTENSIONS:
            return None
        if mime not in ("image/jpeg", "image/png", "image/webp", "image/gif") and suffix not in (
            ".jpg",
            ".jpeg",
            ".png",
            ".webp",
            ".gif",
        ):
            raise _Refused("chat.image_format")
        return document.file_id, document.file_size
    return None


def carries_image(turn: Turn) -> bool:
    """Whether the message is an image of any kind (readable or not)."""
    try:
        return _source(turn) is not None
    except _Refused:
        return True


async def picture(turn: Turn, settings: Settings) -> Picture | None:
    """Download and prepare the image of a turn; None if the message has none. Anything wrong
    with it is a UserError in the user's language."""
    try:
        source = _source(turn)
        if source is None:
            return None
        file_id, size = source
        limit = int(settings.vision_max_mb * 1024 * 1024)
        if size is not None and size > limit:
            raise _Refused("chat.image_too_big", limit_mb=_mb(settings.vision_max_mb))
        data = await turn.download(file_id, size=size)
        if len(data) > limit:
            raise _Refused("chat.image_too_big", limit_mb=_mb(settings.vision_max_mb))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            _DECODING, _prepare, data, settings.vision_side, settings.vision_history_side
        )
    except _Refused as refused:
        raise UserError(turn.t(refused.key, **refused.values)) from None


def _mb(value: float) -> str:
    return f"{value:g}"


def _prepare(data: bytes, side: int, history_side: int) -> Picture:
    """Check the image, take its first frame upright in RGB, and encode both sizes (blocking).

    It is scaled down before anything else is done to it, in a mode Pillow resamples well, so
    the only full-size copies are the decoded frame and at most one conversion; their bytes are
    checked against DECODE_BUDGET from the header, before any pixel is decoded."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in READABLE:
                raise _Refused("chat.image_format")
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise _Refused("chat.image_pixels", megapixels=MAX_PIXELS // 1_000_000)
            image.seek(0)
            if image.format == "JPEG":
                image.draft("RGB", (side, side))  # decode at 1/2, 1/4, 1/8 scale: much faster
            mode = _resizable_mode(image)
            per_pixel = PIXEL_BYTES.get(image.mode, 4)
            if mode != image.mode:
                per_pixel += PIXEL_BYTES.get(mode, 4)
            if mode in ("LA", "RGBA"):
                per_pixel += 4  # Pillow resamples a premultiplied copy
            width, height = image.size
            if width * height * per_pixel > DECODE_BUDGET:
                limit = min(DECODE_BUDGET // per_pixel, MAX_PIXELS) // 1_000_000
                raise _Refused("chat.image_pixels", megapixels=limit)
            frame = image.convert(mode) if mode != image.mode else image
            frame.thumbnail((side, side))
            frame = ImageOps.exif_transpose(frame)  # conversions keep the EXIF data
        if frame.mode in ("RGBA", "LA"):
            flat = Image.new("RGB", frame.size, "white")
            flat.paste(frame, mask=frame.getchannel("A"))
            frame = flat
        else:
            frame = frame.convert("RGB")
    except _Refused:
        raise
    except Image.DecompressionBombError:  # Pillow's own guard, past 2 x its MAX_IMAGE_PIXELS
        raise _Refused("chat.image_pixels", megapixels=MAX_PIXELS // 1_000_000) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        log.info("an image could not be read: %r", exc)
        raise _Refused("chat.image_unreadable") from None
    now = {"type": "image_url", "image_url": {"url": _data_url(frame)}}
    frame.thumbnail((history_side, history_side))
    kept = {"type": "image_url", "image_url": {"url": _data_url(frame), "detail": "low"}}
    return Picture(now, kept)


def _resizable_mode(image: PILImage.Image) -> str:
    """The mode to scale `image` down in: its own when Pillow resamples it smoothly (it falls
    back to nearest-neighbour for 1-bit and palette images), with alpha when it has any."""
    alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if alpha:
        return "LA" if image.mode in ("1", "L", "LA", "La") else "RGBA"
    if image.mode in ("1", "L"):
        return "L"
    return "RGB"


def _data_url(image: PILImage.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return DATA_URL + base64.b64encode(buffer.getvalue()).decode()


def content(text: str, part: dict[str, Any]) -> list[dict[str, Any]]:
    """A user message's content: the caption (if any), then the image."""
    return [{"type": "text", "text": text}, part] if text else [part]


def _is_image(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "image_url"


def has_images(messages: list[ChatMessage]) -> bool:
    """Whether any message carries an image part."""
    return any(
        isinstance(m.get("content"), list) and any(_is_image(p) for p in m["content"])
        for m in messages
    )


def recent_images(past: list[ChatMessage], keep: int) -> list[ChatMessage]:
    """The past with images only in the newest `keep` messages that have any; in older ones each
    image becomes the text "[image]". The stored messages are not changed."""
    result: list[ChatMessage] = []
    seen = 0
    for message in reversed(past):
        parts = message.get("content")
        if isinstance(parts, list) and any(_is_image(p) for p in parts):
            seen += 1
            if seen > keep:
                parts = [
                    {"type": "text", "text": PLACEHOLDER} if _is_image(p) else p for p in parts
                ]
                message = {**message, "content": parts}
        result.append(message)
    result.reverse()
    return result


def part_tokens(part: Any) -> int:
    """Estimated tokens of one content part: text as text; an image as OpenAI bills it (85 at low
    detail; at high detail 85 + 170 per 512 px tile of the image scaled into 2048 px and then to
    768 px on its short side; 765, a 1024 px square, when the size cannot be read)."""
    if not isinstance(part, dict):
        return len(str(part)) // 3
    if part.get("type") == "text":
        text = str(part.get("text") or "")
        return max(len(text) // 3, len(text.encode()) // 4)
    if part.get("type") != "image_url":
        return len(str(part)) // 3
    image = part.get("image_url") or {}
    if image.get("detail") == "low":
        return LOW_DETAIL_TOKENS
    size = _size(str(image.get("url") or ""))
    if size is None:
        return 765
    fit = min(1.0, 2048 / max(size))
    width, height = size[0] * fit, size[1] * fit
    short = min(1.0, 768 / min(width, height))
    tiles = math.ceil(width * short / 512) * math.ceil(height * short / 512)
    return LOW_DETAIL_TOKENS + 170 * tiles


def _size(url: str) -> tuple[int, int] | None:
    """Width and height from the first bytes of a base64 image data URL (the header is enough)."""
    from PIL import Image, UnidentifiedImageError

    head, sep, data = url.partition(";base64,")
    if not sep or not head.startswith("data:image/"):
        return None
    try:
        start = base64.b64decode(data[:16384])
        with Image.open(io.BytesIO(start)) as image:
            return image.size
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError):
        return None


TEXTS = {
    "en": {
        "chat.image_too_big": "The image is too big: at most {limit_mb} MB.",
        "chat.image_pixels": "The image is too large: at most {megapixels} megapixels.",
        "chat.image_format": "I can look at JPEG, PNG, WebP and GIF images. "
        "Please send the picture as a photo or in one of these formats.",
        "chat.image_unreadable": "I could not read this image. Please send it again as a photo.",
        "chat.image_animated": "I can't look at animated stickers. Send a picture or a regular sticker.",
        "chat.vision_off": "I can't look at images here; please describe it in words.",
    },
    "ru": {
        "chat.image_too_big": "Картинка слишком большая: не больше {limit_mb} МБ.",
        "chat.image_pixels": "Картинка слишком большая: не больше {megapixels} мегапикселей.",
        "chat.image_format": "Я умею смотреть картинки JPEG, PNG, WebP и GIF. "
        "Пришлите изображение как фото или в одном из этих форматов.",
        "chat.image_unreadable": "Не удалось прочитать картинку. Пришлите её ещё раз как фото.",
        "chat.image_animated": "Анимированные стикеры я не вижу. Пришлите картинку "
        "или обычный стикер.",
        "chat.vision_off": "Здесь я не смотрю картинки; опишите, пожалуйста, словами.",
    },
}
"""Merged into the chat plugin's register_texts."""
