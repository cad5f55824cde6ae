"""calc: exact arithmetic, unit conversion and the time in any time zone, as tools for the chat
model. Enable it beside "chat": the model calls these instead of guessing at numbers and clocks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator

import botcore
from botcore_calc.arithmetic import CalcError, evaluate, show
from botcore_calc.units import convert

clock: Callable[[ZoneInfo], datetime] = datetime.now
"""Where the time comes from (tests replace it)."""


class Settings(botcore.StrictModel):
    """[plugins.calc]"""

    timezone: str = "UTC"
    """The time zone for "what time is it?" when the user names none (an IANA name)."""

    @field_validator("timezone")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            _zone(value)
        except botcore.UserError as exc:
            raise ValueError(exc.message) from None
        return value


@botcore.hookimpl
def settings_model() -> type[Settings]:
    return Settings


@botcore.hookimpl
def register_tools() -> list[Callable[..., Any]]:
    return [calculate, convert_units, current_time]


def calculate(expression: str) -> str:
    """Compute an arithmetic expression exactly (fractions, no rounding). Use it for any sum
    the user asks about instead of working it out yourself.

    Args:
        expression: Numbers with + - * / // % ** and parentheses, e.g. "(0.1 + 0.2) * 3".
    """
    try:
        return f"{expression} = {show(evaluate(expression))}"
    except CalcError as exc:
        raise botcore.UserError(str(exc)) from None


def convert_units(value: float, from_unit: str, to_unit: str) -> str:
    """Convert a quantity between units of length, mass, volume, time, speed, data or
    temperature (metric, imperial and US units).

    Args:
        value: The quantity to convert.
        from_unit: Its unit, e.g. "mi", "lb", "°F", "km/h", "GiB".
        to_unit: The unit wanted, e.g. "km", "kg", "°C", "mph", "MB".
    """
    amount = Fraction(repr(value))
    try:
        result = convert(amount, from_unit, to_unit)
    except ValueError as exc:
        raise botcore.UserError(str(exc)) from None
    return f"{show(amount)} {from_unit} = {show(result)} {to_unit}"


def current_time(turn: botcore.Turn, timezone: str | None = None) -> str:
    """The current date, weekday and time in a time zone.

    Args:
        timezone: An IANA time zone such as "Europe/Paris" or "Asia/Tokyo"; leave it out for
            the bot's own time zone.
    """
    zone = _zone(timezone or turn.app.settings(Settings).timezone)
    now = clock(zone)
    return f"{now:%Y-%m-%d %H:%M:%S, %A} in {zone.key} (UTC{now:%z}, {now.tzname()})"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise botcore.UserError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Paris"
        ) from None
