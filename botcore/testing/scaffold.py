"""`botcore new-plugin NAME`: a pip-installable plugin package whose tests pass from the start."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from botcore.plugins import BUILTIN_PLUGINS, DISTRIBUTION, available_plugins

NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
"""A Python identifier and a Telegram command name at once (the plugin's command is /NAME)."""


class ScaffoldError(Exception):
    """The package cannot be created: one line saying why."""


def new_plugin(name: str, directory: Path) -> Path:
    """Write botcore-NAME/ under `directory`; returns its path."""
    check_name(name)
    target = directory / f"botcore-{name}"
    if target.exists():
        raise ScaffoldError(f"{target} already exists")
    for relative, template in FILES.items():
        path = target / relative.replace("@NAME@", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = template.lstrip("\n").replace("@NAME@", name).replace("@DISTRIBUTION@", DISTRIBUTION)
        path.write_text(text, encoding="utf-8")
    return target


def check_name(name: str) -> None:
    """A plugin name: lowercase letters, digits and _, at most 32, not a first-party plugin's."""
    if not NAME.match(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"bad plugin name {name!r}: use 1-32 lowercase letters, digits and _, "
            "starting with a letter (it is the module botcore_NAME and the command /NAME)"
        )
    first_party = {*BUILTIN_PLUGINS}
    first_party |= {
        n
        for n, ep in available_plugins().items()
        if ep.dist is not None and ep.dist.name == DISTRIBUTION
    }
    if name in first_party:
        raise ScaffoldError(f"bad plugin name {name!r}: botcore has a plugin of that name")


PYPROJECT = """
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "botcore-@NAME@"
version = "0.1.0"
description = "@NAME@: a botcore plugin"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["@DISTRIBUTION@"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-asyncio>=0.24"]

# How botcore finds the plugin: bot.toml names it "@NAME@" in [bot] plugins.
[project.entry-points.botcore]
@NAME@ = "botcore_@NAME@"

[tool.setuptools]
packages = ["botcore_@NAME@"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
"""

MODULE = '''
"""@NAME@: /@NAME@ greets you, and the chat model can count words with a tool."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import botcore


class Settings(botcore.StrictModel):
    """[plugins.@NAME@] in bot.toml; an unknown key there stops start-up with its name."""

    default_name: str = "friend"
    """Who /@NAME@ greets when no name is given."""


@botcore.hookimpl
def settings_model() -> type[Settings]:
    return Settings


@botcore.hookimpl
def register_texts() -> Mapping[str, Mapping[str, str]]:
    return {
        "en": {
            "@NAME@.help": "Greet you: /@NAME@ [name]",
            "@NAME@.hello": "Hello, {name}!",
        },
        "ru": {
            "@NAME@.help": "Поприветствовать: /@NAME@ [имя]",
            "@NAME@.hello": "Привет, {name}!",
        },
    }


@botcore.hookimpl
def register_commands(app: botcore.App) -> Sequence[botcore.Command]:
    return [botcore.Command("@NAME@", greet, help=app.translations("@NAME@.help"))]


@botcore.hookimpl
def register_tools() -> Sequence[Callable[..., Any]]:
    return [@NAME@_count_words]


async def greet(turn: botcore.Turn) -> str:
    """/@NAME@ [name]: a greeting in the user's language."""
    name = turn.args or turn.app.settings(Settings).default_name
    return turn.t("@NAME@.hello", name=name)


def @NAME@_count_words(text: str) -> int:
    """Count the words in a text.

    Args:
        text: The text whose words to count.
    """
    return len(text.split())
'''

TESTS = '''
"""Tests of the @NAME@ plugin: the real bot against botcore's fake Telegram (see the testing kit)."""

from __future__ import annotations

from botcore.testing.fake_telegram import FakeTelegram
from botcore_@NAME@ import @NAME@_count_words


async def test_command_greets_in_the_users_language(start_bot, telegram: FakeTelegram) -> None:
    await start_bot(["@NAME@"], settings={"@NAME@": {"default_name": "world"}})
    reply = await telegram.reply_to("/@NAME@")
    assert reply.text == "Hello, world!"
    reply = await telegram.reply_to("/@NAME@ Anna", language_code="ru")
    assert reply.text == "Привет, Anna!"


async def test_help_lists_the_command(start_bot, telegram: FakeTelegram) -> None:
    await start_bot(["@NAME@"])
    reply = await telegram.reply_to("/help")
    assert "/@NAME@ — Greet you: /@NAME@ [name]" in (reply.text or "")


def test_tool_counts_words() -> None:
    assert @NAME@_count_words("one two  three") == 3
    assert @NAME@_count_words("") == 0
'''

README = """
# botcore-@NAME@

A botcore plugin: `/@NAME@ [name]` greets you, and the
chat model may call the `@NAME@_count_words` tool.

```sh
pip install botcore-@NAME@
```

In `bot.toml`:

```toml
[bot]
plugins = ["history", "chat", "@NAME@"]

[plugins.@NAME@]
default_name = "friend"
```

Try it without Telegram: `botcore console --config bot.toml`, then type `/@NAME@`.

## Development

```sh
pip install -e ".[test]"
pytest
```
"""

FILES = {
    "pyproject.toml": PYPROJECT,
    "README.md": README,
    "botcore_@NAME@/__init__.py": MODULE,
    "tests/test_@NAME@.py": TESTS,
}
