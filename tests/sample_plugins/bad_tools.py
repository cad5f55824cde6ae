"""Tools that must stop start-up, one per `[plugins."sample_plugins.bad_tools"] which = ...`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botcore import App, StrictModel, hookimpl


class Settings(StrictModel):
    which: str


@hookimpl
def settings_model() -> type[Settings]:
    return Settings


@hookimpl
def register_tools(app: App) -> list[Callable[..., Any]]:
    return [globals()[app.settings(Settings).which]]


def no_hint(city) -> str:  # type: ignore[no-untyped-def]
    """Weather.

    Args:
        city: The city.
    """
    return ""


def no_description(city: str) -> str:
    """Weather."""
    return ""


def no_docstring(city: str) -> str:
    return ""


class Place:
    """Not something JSON can carry."""


def bad_type(place: Place) -> str:
    """Weather.

    Args:
        place: Where.
    """
    return ""


def star_args(*cities: str) -> str:
    """Weather.

    Args:
        cities: The cities.
    """
    return ""


def add(a: int, b: int) -> int:
    """Add, a second time (toolbox has an `add` too).

    Args:
        a: One.
        b: Two.
    """
    return a + b
