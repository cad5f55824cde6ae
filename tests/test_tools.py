"""Tools end to end: the model calls plugin functions through the chat plugin, against the fakes."""

from __future__ import annotations

import json
import logging
import types
from pathlib import Path

import pytest
from sample_plugins import toolbox

from botcore import ConfigError
from botcore.testing.fake_openai import ChatReply, FakeOpenAI, ToolCall
from botcore.testing.fake_telegram import FakeTelegram
from botcore.tools import describe

TOOLBOX = "sample_plugins.toolbox"
BAD = "sample_plugins.bad_tools"
HISTORY: dict[str, dict[str, object]] = {"history": {}}
STREAM = pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])


def chat(stream: bool, **more: object) -> dict[str, dict[str, object]]:
    return {"chat": {"stream": stream, **more}}


def calls(*tool_calls: ToolCall, text: str = "") -> ChatReply:
    return ChatReply(text=text, tool_calls=list(tool_calls))


@STREAM
async def test_a_tool_call_round_trip(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, stream: bool
) -> None:
    await start_bot(["chat", TOOLBOX], settings=chat(stream))
    openai_server.script_chat(calls(ToolCall("add", {"a": 2, "b": 40}, "c1")), "It is **42**.")
    reply = await telegram.reply_to("what is 2 + 40?")
    await telegram.wait_for(lambda: reply.text == "It is 42.")
    first, second = openai_server.chat_requests
    tools = {t["function"]["name"]: t for t in first["tools"]}
    assert set(tools) == {"add", "whoami", "slow", "explode", "refuse", "picture"}
    assert tools["add"] == {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two whole numbers exactly.",
            "parameters": {
                "type": "object",
                "properties": {
                    "a": {"type": "integer", "description": "The first number."},
                    "b": {"type": "integer", "description": "The second number."},
                },
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        },
    }
    assert "turn" not in json.dumps(tools["picture"]["function"]["parameters"])
    assert openai_server.tool_messages() == {"c1": "42"}
    assert second["messages"][-2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a":2,"b":40}'},
            }
        ],
    }
    assert len(telegram.bot_messages(42)) == 1


async def test_without_tools_the_request_is_unchanged(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat"], settings=chat(False))
    await telegram.reply_to("hi")
    assert "tools" not in openai_server.chat_requests[-1]


async def test_max_tool_rounds_zero_offers_no_tools(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat", TOOLBOX], settings=chat(False, max_tool_rounds=0))
    assert (await telegram.reply_to("hi")).text == "echo: hi"
    assert "tools" not in openai_server.chat_requests[-1]


@STREAM
async def test_parallel_calls_all_run_and_all_answer(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, stream: bool
) -> None:
    await start_bot(["chat", TOOLBOX], settings=chat(stream, tool_timeout=5))
    openai_server.script_chat(
        calls(
            ToolCall("slow", {"seconds": 0.3}, "c1"),
            ToolCall("whoami", {}, "c2"),
            ToolCall("add", {"a": 1, "b": 1}, "c3"),
        ),
        "Done.",
    )
    reply = await telegram.reply_to("do three things")
    await telegram.wait_for(lambda: reply.text == "Done.")
    assert openai_server.tool_messages() == {"c1": "waited", "c2": "user 42", "c3": "2"}


@STREAM
async def test_a_raising_tool_tells_the_model_and_the_turn_goes_on(
    start_bot,
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
    stream: bool,
) -> None:
    await start_bot(["chat", TOOLBOX], settings=chat(stream))
    openai_server.script_chat(
        calls(ToolCall("explode", {}, "c1"), ToolCall("refuse", {"city": "Atlantis"}, "c2")),
        "Sorry, that did not work.",
    )
    reply = await telegram.reply_to("try it")
    await telegram.wait_for(lambda: reply.text == "Sorry, that did not work.")
    assert openai_server.tool_messages() == {
        "c1": "Error: explode failed with an internal error (RuntimeError).",
        "c2": "Error: no data for Atlantis",
    }
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in logged] == [
        "plugin sample_plugins.toolbox: tool explode failed (update 1)"
    ]


@STREAM
async def test_a_tool_that_takes_too_long_times_out(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, stream: bool
) -> None:
    await start_bot(["chat", TOOLBOX], settings=chat(stream, tool_timeout=0.2))
    openai_server.script_chat(calls(ToolCall("slow", {"seconds": 30}, "c1")), "It was too slow.")
    reply = await telegram.reply_to("wait for me", timeout=10)
    await telegram.wait_for(lambda: reply.text == "It was too slow.")
    assert openai_server.tool_messages() == {"c1": "Error: slow timed out after 0.2 s."}


ADD = "Error: invalid arguments for add: "


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("add", {"a": "two", "b": 1}, ADD + "a: Input should be a valid integer, unable to parse"),
        ("add", {"a": 1}, ADD + "b: Field required"),
        ("add", {"a": 1, "b": 2, "c": 3}, ADD + "c: Extra inputs are not permitted"),
        ("add", '{"a": 1,', ADD + "arguments: Invalid JSON: EOF while parsing"),
        (
            "subtract",
            {"a": 1},
            "Error: there is no tool 'subtract' (tools: add, whoami, slow, explode, refuse, picture).",
        ),
    ],
    ids=["wrong-type", "missing", "extra", "broken-json", "unknown-tool"],
)
async def test_bad_arguments_go_back_to_the_model(
    start_bot,
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    name: str,
    arguments: dict[str, object] | str,
    expected: str,
) -> None:
    await start_bot(["chat", TOOLBOX], settings=chat(False))
    openai_server.script_chat(calls(ToolCall(name, arguments, "c1")), "Let me fix that.")
    assert (await telegram.reply_to("add them")).text == "Let me fix that."
    results = openai_server.tool_messages()
    assert list(results) == ["c1"] and results["c1"].startswith(expected)


@STREAM
async def test_the_round_limit_gives_a_clear_message_and_a_valid_history(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, stream: bool
) -> None:
    await start_bot(
        ["history", "chat", TOOLBOX], settings={**HISTORY, **chat(stream, max_tool_rounds=2)}
    )
    openai_server.script_chat(
        *(calls(ToolCall("add", {"a": i, "b": 1}, f"c{i}")) for i in range(3))
    )
    reply = await telegram.reply_to("loop forever")
    assert reply.text == (
        "The model kept calling tools without answering, so I stopped after 2 rounds. "
        "Please try again or rephrase the question."
    )
    assert len(openai_server.chat_requests) == 3
    # The two rounds that ran are in the history; the third, never run, is not, so the
    # follow-up is a valid request (the fake refuses unanswered calls, as the API does).
    assert (await telegram.reply_to("and now?")).text == "echo: and now?"
    roles = [m["role"] for m in openai_server.last_chat_messages()]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "user"]


async def test_the_round_limit_in_russian(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat", TOOLBOX], settings=chat(False, max_tool_rounds=1))
    openai_server.script_chat(*(calls(ToolCall("whoami", {})) for _ in range(2)))
    reply = await telegram.reply_to("крутись", language_code="ru")
    assert (reply.text or "").startswith("Модель раз за разом вызывала инструменты")


@STREAM
async def test_a_rich_result_is_delivered_to_the_user(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, stream: bool
) -> None:
    await start_bot(["chat", TOOLBOX], settings=chat(stream))
    openai_server.script_chat(calls(ToolCall("picture", {"subject": "a cat"}, "c1")), "Here it is!")
    await telegram.send_message("draw me a cat")
    photo = await telegram.next_message(42)
    answer = await telegram.next_message(42)
    assert photo.kind == "photo" and photo.text == "a cat"
    assert photo.data is not None and photo.data.startswith(b"\x89PNG")
    await telegram.wait_for(lambda: answer.text == "Here it is!")
    assert openai_server.tool_messages() == {
        "c1": "Done: the photo was sent to the user (caption: a cat). Do not repeat it; "
        "answer briefly."
    }


@STREAM
async def test_history_keeps_the_tool_exchange_for_follow_ups(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI, stream: bool
) -> None:
    await start_bot(["history", "chat", TOOLBOX], settings={**HISTORY, **chat(stream)})
    openai_server.script_chat(
        calls(ToolCall("add", {"a": 20, "b": 22}, "c1"), text="Let me add that."), "It is 42."
    )
    reply = await telegram.reply_to("what is 20 + 22?")
    await telegram.wait_for(lambda: reply.text == "Let me add that.\n\nIt is 42.")
    await telegram.reply_to("and doubled?")
    assert openai_server.last_chat_messages()[1:] == [
        {"role": "user", "content": "what is 20 + 22?"},
        {
            "role": "assistant",
            "content": "Let me add that.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a":20,"b":22}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "assistant", "content": "It is 42."},
        {"role": "user", "content": "and doubled?"},
    ]


async def test_every_round_is_metered(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    toolbox.usage.clear()
    await start_bot(["chat", TOOLBOX], settings=chat(False))
    tokens = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    openai_server.script_chat(
        ChatReply(tool_calls=[ToolCall("whoami", {})], usage=tokens),
        ChatReply(text="You are 42.", usage={**tokens, "prompt_tokens": 150}),
    )
    assert (await telegram.reply_to("who am I?")).text == "You are 42."
    assert toolbox.usage == [{"chat.input_tokens": 250, "chat.output_tokens": 20}]


BAD_TOOL = "plugin 'sample_plugins.bad_tools': tool "


@pytest.mark.parametrize(
    ("which", "error"),
    [
        ("no_hint", BAD_TOOL + "'no_hint': argument 'city': has no type hint"),
        (
            "no_description",
            BAD_TOOL + "'no_description': argument 'city': has no description (add it under Args: "
            "in the docstring)",
        ),
        (
            "no_docstring",
            BAD_TOOL + "'no_docstring': needs a docstring saying what it does (the model reads it)",
        ),
        ("bad_type", BAD_TOOL + "'bad_type': argument 'place': the type Place cannot be told to"),
        ("star_args", BAD_TOOL + "'star_args': argument 'cities': *args and **kwargs cannot be"),
        (
            "add",
            "tool 'add' is registered by both 'sample_plugins.toolbox' and "
            "'sample_plugins.bad_tools'",
        ),
    ],
)
async def test_a_bad_tool_stops_start_up_naming_plugin_and_tool(
    start_bot, which: str, error: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        await start_bot(["chat", TOOLBOX, BAD], settings={BAD: {"which": which}})
    assert str(exc.value).startswith(error)
    assert "\n" not in str(exc.value)


def test_the_readme_example_tool_is_valid() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Tools for the model", 1)[1]
    source = section.split("```python\n", 1)[1].split("```", 1)[0]
    module = types.ModuleType("readme_weather")
    exec(compile(source, "README.md", "exec"), module.__dict__)  # our own README, not input
    (function,) = module.register_tools()
    definition = describe("weather", function).definition["function"]
    assert definition["description"] == "The current weather in a city."
    assert definition["parameters"]["properties"] == {
        "city": {"type": "string", "description": 'The city, e.g. "Paris".'},
        "unit": {
            "type": "string",
            "enum": ["C", "F"],
            "default": "C",
            "description": "Celsius or Fahrenheit.",
        },
    }


async def test_the_definitions_count_against_the_context_budget(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    text = "word " * 300  # ~500 tokens: fits 1000 alone, not beside ~500 tokens of definitions
    await start_bot(["chat", TOOLBOX], settings=chat(False, context_tokens=1000))
    reply = await telegram.reply_to(text)
    assert (reply.text or "").startswith("Your message is too long for the model")
    assert openai_server.chat_requests == []


async def test_without_tools_offered_the_budget_is_whole(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    text = "word " * 300
    await start_bot(["chat", TOOLBOX], settings=chat(False, context_tokens=1000, max_tool_rounds=0))
    assert (await telegram.reply_to(text)).text == "echo: " + text.strip()


async def test_retry_after_a_tool_exchange_asks_again_cleanly(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["history", "chat", TOOLBOX], settings={**HISTORY, **chat(False)})
    openai_server.script_chat(calls(ToolCall("add", {"a": 1, "b": 2}, "c1")), "It is 3.")
    assert (await telegram.reply_to("1 + 2?")).text == "It is 3."
    assert (await telegram.reply_to("/retry")).text == "echo: 1 + 2?"
    roles = [m["role"] for m in openai_server.last_chat_messages()]
    assert roles == ["system", "user"]  # the old calls and results went with the old answer


async def test_a_failing_tool_counts_against_its_plugin_which_then_offers_none(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """A tool's failures open its plugin's circuit breaker, like a command's: while it cools
    down, the model is not offered its tools and a call to one is refused without running it."""
    bot = await start_bot(["chat", TOOLBOX], settings=chat(False), bot={"breaker": {"failures": 2}})
    openai_server.script_chat(
        calls(ToolCall("explode", {}, "c1"), ToolCall("explode", {}, "c2")), "It broke."
    )
    assert (await telegram.reply_to("try it")).text == "It broke."
    assert bot.runtime.breaker.state(TOOLBOX) == "open"
    assert "RuntimeError in tool explode" in bot.runtime.breaker.plugins[TOOLBOX].last_error
    toolbox.CALLS.clear()
    openai_server.script_chat(calls(ToolCall("whoami", {}, "c3")), "No tools today.")
    assert (await telegram.reply_to("who am I?")).text == "No tools today."
    asked, told = openai_server.chat_requests[-2:]
    assert "tools" not in asked and "tools" not in told  # its only provider is off
    assert openai_server.tool_messages() == {"c3": "Error: whoami is switched off right now."}
    assert toolbox.CALLS == []  # never ran


async def test_a_plugin_switched_off_by_an_admin_offers_and_runs_no_tool(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    bot = await start_bot(["chat", "sample_plugins.eager", TOOLBOX], settings=chat(False))
    bot.app.switch_plugin(TOOLBOX, on=False)
    toolbox.CALLS.clear()
    openai_server.script_chat(calls(ToolCall("whoami", {}, "c1")), "Only the clock.")
    assert (await telegram.reply_to("who am I?")).text == "Only the clock."
    first = openai_server.chat_requests[0]
    assert [t["function"]["name"] for t in first["tools"]] == ["clock"]
    assert openai_server.tool_messages() == {"c1": "Error: whoami is switched off right now."}
    assert toolbox.CALLS == []
    bot.app.switch_plugin(TOOLBOX, on=True)
    openai_server.script_chat("Back.")
    await telegram.reply_to("and now?")
    assert {t["function"]["name"] for t in openai_server.chat_requests[-1]["tools"]} == {
        "clock", "add", "whoami", "slow", "explode", "refuse", "picture"
    }  # fmt: skip
