"""image: `/image <prompt>` draws a picture with the images endpoint and sends it as a photo.

With the chat plugin, the model may draw too ("draw me a cat"): `draw_image` is offered as a tool.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from pydantic import Field

from botcore import App, Command, Photo, StrictModel, Turn, UserError, explain_api_error, hookimpl

PLUGIN = "image"
MAX_DOWNLOAD = 20 * 1024 * 1024
log = logging.getLogger(__name__)


class Settings(StrictModel):
    """[plugins.image]"""

    model: str = "dall-e-3"
    """dall-e-3, gpt-image-1, or any model of a compatible endpoint."""
    size: str = "1024x1024"
    quality: str | None = None
    """dall-e-3: "standard" or "hd"; gpt-image-1: "low", "medium", "high" or "auto"."""
    response_format: str | None = None
    """"url" or "b64_json"; leave unset for models that always answer b64_json (gpt-image-1)."""
    max_prompt_chars: int = Field(4000, ge=1)
    timeout: float = Field(120, gt=0)
    tool: bool = True
    """Offer `draw_image` to the chat model, so "draw me a cat" works without the command."""


@hookimpl
def settings_model() -> type[Settings]:
    return Settings


@hookimpl
def startup(app: App) -> None:
    app.require_openai()  # a missing [openai] key fails start-up, not the first message


@hookimpl
def register_texts() -> dict[str, dict[str, str]]:
    return {
        "en": {
            "image.help": "Draw a picture: /image a cat in a hat",
            "image.usage": "Describe the picture after the command, for example:\n/image a cat in a hat",
            "image.too_long": "The description is too long: at most {limit} characters.",
        },
        "ru": {
            "image.help": "Нарисовать картинку: /image кот в шляпе",
            "image.usage": "Опишите картинку после команды, например:\n/image кот в шляпе",
            "image.too_long": "Описание слишком длинное: не больше {limit} символов.",
        },
    }


@hookimpl
def register_commands(app: App) -> Sequence[Command]:
    return [Command("image", draw, help=app.translations("image.help"))]


@hookimpl
def register_tools(app: App) -> Sequence[Callable[..., Any]]:
    return [draw_image] if app.settings(Settings).tool else []


async def draw(turn: Turn) -> Photo:
    """/image <prompt>"""
    prompt = turn.args.strip()
    if not prompt:
        raise UserError(turn.t("image.usage"))
    return await generate(turn, prompt)


async def draw_image(prompt: str, turn: Turn) -> Photo:
    """Draw a picture and send it to the user. Use it when the user asks to draw, paint or
    generate an image; the user sees the picture, so do not describe it back at length.

    Args:
        prompt: A detailed description of the picture to draw.
    """
    return await generate(turn, prompt.strip())


async def generate(turn: Turn, prompt: str) -> Photo:
    """The picture for `prompt` from the images endpoint; a UserError says what went wrong."""
    import openai

    settings = turn.app.settings(Settings)
    if len(prompt) > settings.max_prompt_chars:
        raise UserError(turn.t("image.too_long", limit=settings.max_prompt_chars))
    request: dict[str, Any] = {
        "prompt": prompt,
        "model": settings.model,
        "size": settings.size,
        "n": 1,
    }
    if settings.quality:
        request["quality"] = settings.quality
    if settings.response_format:
        request["response_format"] = settings.response_format
    await turn.reserve({"image.images": 1})
    try:
        async with turn.chat_action("upload_photo"):
            with turn.app.metrics.timed("llm_seconds", plugin=PLUGIN, model=settings.model):
                result = await turn.app.openai.images.generate(**request, timeout=settings.timeout)
            image = result.data[0] if result.data else None
            if image is None:
                raise RuntimeError("the images endpoint returned no image")
            if image.b64_json:
                data = base64.b64decode(image.b64_json, validate=True)
            elif image.url:
                data = await _download(image.url, settings.timeout)
            else:
                raise RuntimeError("the image has neither b64_json nor url")
    except openai.OpenAIError as exc:
        raise explain_api_error(exc, turn, plugin=PLUGIN) from None
    except (aiohttp.ClientError, TimeoutError, binascii.Error) as exc:
        log.warning("could not fetch the generated image (update %s): %r", turn.update_id, exc)
        raise UserError(turn.t("error")) from None
    turn.meter("image.images", 1)
    return Photo(data, caption=prompt)


async def _download(url: str, seconds: float) -> bytes:
    """Fetch the image ourselves: generated URLs expire, and Telegram's fetch of them can fail."""
    client_timeout = aiohttp.ClientTimeout(total=seconds)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.get(url) as response,
    ):
        response.raise_for_status()
        data = bytearray()
        async for block in response.content.iter_chunked(65536):
            data += block
            if len(data) > MAX_DOWNLOAD:
                raise aiohttp.ClientPayloadError("the generated image is over 20 MB")
    return bytes(data)
