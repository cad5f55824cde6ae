"""image end to end: /image draws through the images endpoint and sends a photo."""

from __future__ import annotations

import pytest

from botcore.testing.fake_openai import ChatReply, ErrorReply, FakeOpenAI, ImageReply, ToolCall
from botcore.testing.fake_telegram import FakeTelegram

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("response_format", ["url", "b64_json"])
async def test_image_is_sent_as_a_photo_with_the_prompt(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, response_format: str
) -> None:
    await start_bot(
        ["image"],
        settings={
            "image": {
                "model": "dall-e-3",
                "size": "1792x1024",
                "quality": "hd",
                "response_format": response_format,
            }
        },
    )
    openai_server.latency = 0.6  # long enough for the "sending a photo…" action to show
    reply = await telegram.reply_to("/image a cat in a hat")
    assert reply.kind == "photo"
    assert reply.text == "a cat in a hat"  # the caption
    assert reply.data is not None and reply.data.startswith(PNG)
    request = [r for r in openai_server.requests if r.path.endswith("/images/generations")][-1].json
    assert request is not None
    assert (request["prompt"], request["model"], request["size"], request["quality"]) == (
        "a cat in a hat",
        "dall-e-3",
        "1792x1024",
        "hd",
    )
    assert request["response_format"] == response_format
    assert (42, "upload_photo") in telegram.chat_actions


async def test_gpt_image_without_response_format(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["image"], settings={"image": {"model": "gpt-image-1", "quality": "low"}})
    reply = await telegram.reply_to("/image a red square")
    assert reply.kind == "photo" and reply.data is not None and reply.data.startswith(PNG)
    request = [r for r in openai_server.requests if r.path.endswith("/images/generations")][-1].json
    assert request is not None and "response_format" not in request


async def test_usage_when_the_prompt_is_missing(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["image"])
    assert (await telegram.reply_to("/image")).text == (
        "Describe the picture after the command, for example:\n/image a cat in a hat"
    )
    assert (await telegram.reply_to("/image", language_code="ru")).text == (
        "Опишите картинку после команды, например:\n/image кот в шляпе"
    )
    assert openai_server.requests == []


async def test_too_long_prompt(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["image"], settings={"image": {"max_prompt_chars": 10}})
    assert (
        await telegram.reply_to("/image " + "x" * 11)
    ).text == "The description is too long: at most 10 characters."
    assert openai_server.requests == []


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            ErrorReply.content_policy(),
            "The model refused this request under its content policy. Try rephrasing it.",
        ),
        (
            ErrorReply.server_error(),
            "The model is unavailable right now. Please try again in a minute.",
        ),
        (
            ErrorReply.rate_limit(),
            "Too many requests to the model right now. Please try again in a minute.",
        ),
    ],
    ids=["content-policy", "500", "429"],
)
async def test_api_errors(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, error: ErrorReply, expected: str
) -> None:
    await start_bot(["image"])
    openai_server.script_image(ImageReply(error=error))
    assert (await telegram.reply_to("/image a forbidden thing")).text == expected
    assert (await telegram.reply_to("/image a cat")).kind == "photo"  # and it keeps working


async def test_an_image_url_that_cannot_be_fetched(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["image"])
    openai_server.script_image(ImageReply(url=openai_server.url + "/files/missing.png"))
    assert (
        await telegram.reply_to("/image a cat")
    ).text == "Could not process the request, please try again later."


async def test_the_chat_model_can_draw(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat", "image"], settings={"image": {"model": "gpt-image-1"}})
    openai_server.script_chat(
        ChatReply(tool_calls=[ToolCall("draw_image", {"prompt": "a ginger cat"}, "c1")]),
        "Here is your cat!",
    )
    await telegram.send_message("draw me a cat")
    photo = await telegram.next_message(42)
    answer = await telegram.next_message(42)
    assert photo.kind == "photo" and photo.text == "a ginger cat"
    assert photo.data is not None and photo.data.startswith(PNG)
    await telegram.wait_for(lambda: answer.text == "Here is your cat!")
    request = [r for r in openai_server.requests if r.path.endswith("/images/generations")][-1].json
    assert request is not None and request["prompt"] == "a ginger cat"
    tools = openai_server.chat_requests[0]["tools"]
    assert [t["function"]["name"] for t in tools] == ["draw_image"]
    assert openai_server.tool_messages() == {
        "c1": "Done: the photo was sent to the user (caption: a ginger cat). Do not repeat it; "
        "answer briefly."
    }


async def test_a_failed_drawing_is_told_to_the_model(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat", "image"], settings={"chat": {"stream": False}})
    openai_server.script_image(ImageReply(error=ErrorReply.content_policy()))
    openai_server.script_chat(
        ChatReply(tool_calls=[ToolCall("draw_image", {"prompt": "something forbidden"}, "c1")]),
        "I cannot draw that.",
    )
    assert (await telegram.reply_to("draw something forbidden")).text == "I cannot draw that."
    assert openai_server.tool_messages() == {
        "c1": "Error: The model refused this request under its content policy. Try rephrasing it."
    }


async def test_the_tool_can_be_switched_off(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(
        ["chat", "image"], settings={"chat": {"stream": False}, "image": {"tool": False}}
    )
    await telegram.reply_to("draw me a cat")
    assert "tools" not in openai_server.chat_requests[-1]
