"""A small TOML writer for bot.toml's shapes, so tests and tools write configs from dicts.

The standard library reads TOML (`tomllib`) but does not write it. A bot.toml is tables of
strings, numbers, booleans and lists, which this covers; what TOML cannot say (None, other
objects) is a TypeError here rather than a file the bot then misreads.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def to_toml(table: Mapping[str, Any]) -> str:
    """The TOML text of `table`: nested mappings become `[a.b]` tables, the rest `key = value`.

    Keys that are not bare (`"chat.input_tokens"`, unicode, spaces) are quoted, so a dotted key
    stays one key. Paths are written as strings.
    """
    return "\n".join(_table(table, "")) + "\n"


def toml_key(key: str) -> str:
    """A bare TOML key, or a quoted one ("chat.input_tokens" is one key, not two)."""
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def toml_value(value: Any) -> str:
    """One TOML value: a string, bool, int, float, path, list, or a mapping as an inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # "1.0", "1e+20", "2.5e-07": all TOML floats
    if isinstance(value, str | os.PathLike):
        return _string(os.fspath(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = (f"{toml_key(_key(k))} = {toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"TOML has no value for {type(value).__name__}: {value!r}")


def _table(table: Mapping[str, Any], prefix: str) -> list[str]:
    """The lines of one table: its header, its values, then its sub-tables."""
    lines = [f"[{prefix}]"] if prefix else []
    lines += [
        f"{toml_key(_key(k))} = {toml_value(v)}"
        for k, v in table.items()
        if not isinstance(v, Mapping)
    ]
    for k, v in table.items():
        if isinstance(v, Mapping):
            name = toml_key(_key(k))
            lines += ["", *_table(v, f"{prefix}.{name}" if prefix else name)]
    return lines


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"TOML keys are strings, not {type(key).__name__}: {key!r}")
    return key


def _string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, plus DEL, which TOML wants escaped too."""
    text.encode("utf-8")  # a lone surrogate is no TOML text: UnicodeEncodeError here, not later
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
