"""botcore.tools on its own: definitions from signatures and docstrings, validation, results."""

from __future__ import annotations

import asyncio
import threading
from enum import Enum
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from botcore import ConfigError, Document, Turn
from botcore.tools import describe, parse_docstring

TURN: Any = None  # these tools never touch the turn


def test_google_docstrings_with_types_and_continued_lines() -> None:
    doc = """Find flights
    between two airports.

    Args:
        origin (str): Where from,
            an IATA code.
        destination: Where to.

    Returns:
        A list of flights.
    """
    summary, args = parse_docstring(doc.replace("\n    ", "\n"))
    assert summary == "Find flights between two airports."
    assert args == {"origin": "Where from, an IATA code.", "destination": "Where to."}


class Color(Enum):
    RED = "red"
    BLUE = "blue"


class Point(BaseModel):
    x: int
    y: int


def paint(
    where: Point,
    color: Color,
    size: Annotated[int, Field(ge=1, le=10, description="Brush size.")] = 3,
    note: str | None = None,
) -> str:
    """Paint a dot.

    Args:
        where: The spot.
        color: The paint.
        note: Anything to remember.
    """
    assert isinstance(where, Point) and isinstance(color, Color)
    return f"{color.value} dot of {size} at {where.x},{where.y} ({note})"


def test_rich_types_are_described_and_arrive_as_python_values() -> None:
    tool = describe("art", paint)
    parameters = tool.definition["function"]["parameters"]
    assert parameters["required"] == ["where", "color"]
    assert parameters["properties"]["size"] == {
        "default": 3,
        "description": "Brush size.",
        "maximum": 10,
        "minimum": 1,
        "type": "integer",
    }
    assert set(parameters["$defs"]) == {"Color", "Point"}
    result = asyncio.run(tool.call(TURN, '{"where": {"x": 1, "y": 2}, "color": "red"}', timeout=5))
    assert result.content == "red dot of 3 at 1,2 (None)"
    bad = asyncio.run(
        tool.call(TURN, '{"where": {"x": 1}, "color": "green", "size": 11}', timeout=5)
    )
    assert not bad.ok
    assert bad.content.startswith("Error: invalid arguments for paint: where.y: Field required; ")


def test_a_plain_function_runs_off_the_event_loop() -> None:
    def where_am_i() -> str:
        """The thread I run in."""
        return threading.current_thread().name

    tool = describe("p", where_am_i)
    result = asyncio.run(tool.call(TURN, "", timeout=5))
    assert result.content != threading.current_thread().name


def test_results_for_the_model() -> None:
    def as_dict() -> dict[str, Any]:
        """A dict."""
        return {"temp": 21, "sky": "clear"}

    def as_file(turn: Turn) -> Document:
        """A file."""
        return Document(b"x", "notes.txt", caption="your notes")

    def huge() -> str:
        """Too much."""
        return "x" * 20_000

    assert asyncio.run(describe("p", as_dict).call(TURN, "{}", timeout=5)).content == (
        '{"temp": 21, "sky": "clear"}'
    )
    delivered = asyncio.run(describe("p", as_file).call(TURN, "{}", timeout=5))
    assert delivered.reply == Document(b"x", "notes.txt", caption="your notes")
    assert delivered.content.startswith("Done: the document was sent to the user (caption: your")
    assert asyncio.run(describe("p", huge).call(TURN, "{}", timeout=5)).content.endswith("…[cut]")


def positional(a: int, /) -> int:
    """Positional only.

    Args:
        a: A number.
    """
    return a


def wrong_turn(turn: int) -> None:
    """A turn that is not a Turn."""


def ghost(a: int) -> int:
    """Describes an argument it does not have.

    Args:
        a: A number.
        b: Not there.
    """
    return a


def any_arg(a: Any) -> None:
    """Anything.

    Args:
        a: Whatever.
    """


@pytest.mark.parametrize(
    ("function", "error"),
    [
        (lambda: "", "plugin 'p': tool '<lambda>': the name must be 1-64 of a-z, A-Z, 0-9, _ and -"),
        ("not a function", "plugin 'p': register_tools must return functions, not 'not a function'"),
        (positional, "plugin 'p': tool 'positional': argument 'a': must not be positional-only"),
        (wrong_turn, "plugin 'p': tool 'wrong_turn': argument 'turn': the injected turn must be"),
        (ghost, "plugin 'p': tool 'ghost': its docstring describes no such argument 'b'"),
        (any_arg, "plugin 'p': tool 'any_arg': argument 'a': Any cannot be described to the model"),
    ],
    ids=["lambda", "not-callable", "positional-only", "wrong-turn", "ghost-argument", "any"],
)  # fmt: skip
def test_what_cannot_be_a_tool(function: Any, error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        describe("p", function)
    assert str(exc.value).startswith(error)
