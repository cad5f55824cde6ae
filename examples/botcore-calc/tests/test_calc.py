"""The calc example plugin: its arithmetic and units alone, then end to end as the model's tools."""

from __future__ import annotations

import re
from datetime import datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

import botcore_calc
import pytest
from botcore_calc.arithmetic import CalcError, evaluate, show
from botcore_calc.units import convert

from botcore import ConfigError
from botcore.testing.fake_openai import ChatReply, FakeOpenAI, ToolCall
from botcore.testing.fake_telegram import FakeTelegram


@pytest.mark.parametrize(
    ("expression", "shown"),
    [
        ("0.1 + 0.2", "0.3"),
        ("1/3 + 1/6", "0.5"),
        ("2/3 - 1/6 + 1/7", "9/14 ≈ 0.64285714285714285714"),
        ("1/3", "1/3 ≈ 0.33333333333333333333"),
        ("2**100", "1267650600228229401496703205376"),
        ("(1 + 2) * 3 / 4", "2.25"),
        ("-2**-2", "-0.25"),
        ("7 // 2 + 7 % 2", "4"),
        ("2^10 × 3 ÷ 4", "768"),
        ("1.5e-3", "0.0015"),
        ("0.1000000000000000055511151231257827 * 10", "1.000000000000000055511151231257827"),
        ("1_000.5 - 0.5", "1000"),
        ("1/2**60", "0.000000000000000000867361737988403547205962240695953369140625"),
    ],
)
def test_exact_arithmetic(expression: str, shown: str) -> None:
    assert show(evaluate(expression)) == shown


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("__import__('os').system('id')", "only numbers and + - * / // % ** ( ) are allowed"),
        ("(1).__class__", "only numbers"),
        ("x + 1", "only numbers"),
        ("'a' * 3", "only numbers"),
        ("1 if 1 else 2", "only numbers"),
        ("1/0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("2 ** 0.5", "only whole exponents"),
        ("9**9**9", "too large"),
        ("1e999999999", "the number 1e999999999 is too large"),
        ("0x10", "not a number: '0x10'"),
        ("(10**3000) * (10**3000)", "too large"),
        ("1 +", "not an arithmetic expression"),
        ("1" * 501, "longer than 500"),
    ],
)
def test_anything_but_arithmetic_is_refused(expression: str, error: str) -> None:
    with pytest.raises(CalcError, match=re.escape(error)):
        evaluate(expression)


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (5, "mi", "km", Fraction("8.04672")),
        (1, "inch", "cm", Fraction("2.54")),
        (212, "°F", "celsius", Fraction(100)),
        (0, "C", "K", Fraction("273.15")),
        (1, "GiB", "MB", Fraction("1073.741824")),
        (1, "Pounds", "kg", Fraction("0.45359237")),
        (36, "km/h", "m/s", Fraction(10)),
    ],
)
def test_units_convert_exactly(value: int, source: str, target: str, expected: Fraction) -> None:
    assert convert(Fraction(value), source, target) == expected


@pytest.mark.parametrize(
    ("source", "target", "error"),
    [
        ("kg", "km", "cannot convert mass (kg) to length (km)"),
        ("parsec", "km", "unknown unit 'parsec'"),
    ],
)
def test_units_that_do_not_convert(source: str, target: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        convert(Fraction(1), source, target)


def test_below_absolute_zero() -> None:
    with pytest.raises(ValueError, match="below absolute zero"):
        convert(Fraction(-500), "F", "C")


# --- end to end: installed through its entry point, called by the (fake) model ---


async def test_the_model_calls_calc_and_the_user_gets_the_answer(
    start_bot,
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    moment = datetime(2026, 11, 24, 18, 30, tzinfo=ZoneInfo("UTC"))
    monkeypatch.setattr(botcore_calc, "clock", moment.astimezone)
    await start_bot(["chat", "calc"], settings={"calc": {"timezone": "Europe/Paris"}})
    openai_server.script_chat(
        ChatReply(
            tool_calls=[
                ToolCall("calculate", {"expression": "0.1 + 0.2"}, "c1"),
                ToolCall("convert_units", {"value": 5, "from_unit": "mi", "to_unit": "km"}, "c2"),
                ToolCall("current_time", {}, "c3"),
                ToolCall("current_time", {"timezone": "Asia/Tokyo"}, "c4"),
            ]
        ),
        "0.1 + 0.2 is exactly 0.3; 5 miles are 8.04672 km; in Paris it is 19:30.",
    )
    reply = await telegram.reply_to("0.1+0.2? 5 miles in km? what time is it here and in Tokyo?")
    await telegram.wait_for(
        lambda: (
            reply.text == "0.1 + 0.2 is exactly 0.3; 5 miles are 8.04672 km; in Paris it is 19:30."
        )
    )
    assert openai_server.tool_messages() == {
        "c1": "0.1 + 0.2 = 0.3",
        "c2": "5 mi = 8.04672 km",
        "c3": "2026-11-24 19:30:00, Tuesday in Europe/Paris (UTC+0100, CET)",
        "c4": "2026-11-25 03:30:00, Wednesday in Asia/Tokyo (UTC+0900, JST)",
    }
    tools = {t["function"]["name"]: t["function"] for t in openai_server.chat_requests[0]["tools"]}
    assert set(tools) == {"calculate", "convert_units", "current_time"}
    parameters = tools["current_time"]["parameters"]
    assert list(parameters["properties"]) == ["timezone"]  # the turn is not shown to the model
    assert parameters.get("required", []) == []


async def test_a_bad_expression_goes_back_to_the_model(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    await start_bot(["chat", "calc"], settings={"chat": {"stream": False}})
    openai_server.script_chat(
        ChatReply(tool_calls=[ToolCall("calculate", {"expression": "open('x')"}, "c1")]),
        "I can only do arithmetic.",
    )
    assert (await telegram.reply_to("open x")).text == "I can only do arithmetic."
    assert openai_server.tool_messages() == {
        "c1": "Error: only numbers and + - * / // % ** ( ) are allowed, not \"open('x')\""
    }


async def test_an_unknown_time_zone_in_the_settings_stops_start_up(start_bot) -> None:
    with pytest.raises(
        ConfigError, match=r"plugins\.calc\.timezone: unknown time zone 'Mars/Base'"
    ):
        await start_bot(["chat", "calc"], settings={"calc": {"timezone": "Mars/Base"}})
