"""The kit's TOML writer: what it writes, tomllib reads back unchanged; and the harness's bot.toml
for a bot run as its own process."""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from botcore.config import load_config
from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness
from botcore.testing.toml_writer import to_toml, toml_key, toml_value

TRICKY = [
    'a "quoted" word',
    "C:\\path\\to\\file and \\n not a newline",
    "Привет, мир 🎲 — ✓",
    "line one\nline two\ttabbed\r\n",
    "controls \x00 \x01 \x08 \x0b \x0c \x1f \x7f",
    "'single' and ''' and \"\"\"",
    "",
    "${TELEGRAM_BOT_TOKEN}",
    "#not a comment",
    "\u2028 separators \u2029 \ufeff",
]


def test_nested_tables_dotted_keys_and_every_value_round_trip() -> None:
    table: dict[str, Any] = {
        "bot": {
            "token": "${TELEGRAM_BOT_TOKEN}",
            "plugins": ["history", "chat", "sample_plugins.boom"],
            "poll_timeout": 5,
            "stream_edit_interval": 0.2,
            "debug": True,
            "quiet": False,
            "webhook": {"url": "http://127.0.0.1:8443/telegram", "port": 8443},
        },
        "openai": {"timeout": 1e20, "tiny": 2.5e-07, "negative": -3.0, "big": 2**62},
        "store": {},
        "plugins": {
            "chat": {"stream": False},
            "budgets": {"limits": {"chat.input_tokens": 1000, "chat.output_tokens": 2000}},
            "sample_plugins.boom": {"nested": {"deeper": {"deepest": [1, 2, 3]}}},
        },
        "tricky": {text or "empty": text for text in TRICKY},
        "keys": {
            "with space": 1,
            "ключ": 2,
            "": 3,
            "a.b.c": 4,
            'quote"key': 5,
            "back\\slash": 6,
            "bare-key_09": 7,
        },
        "lists": {
            "empty": [],
            "mixed": [1, "two", 3.0, True],
            "nested": [[1, 2], ["a", ["b"]]],
            "of_tables": [{"name": "a", "on": True}, {"name": "b", "sub": {"x": 1}}],
            "strings": TRICKY,
        },
    }
    text = to_toml(table)
    assert tomllib.loads(text) == table
    assert '"chat.input_tokens" = 1000' in text  # a dotted key stays one key
    assert "[plugins.budgets.limits]" in text and '[plugins."sample_plugins.boom"]' in text


def test_floats_keep_their_value_and_specials_are_toml_words() -> None:
    for number in (0.1, 1.0, -0.0, 1 / 3, 1e300, 5e-324, 123456789.125):
        assert tomllib.loads(f"x = {toml_value(number)}")["x"] == number
    assert tomllib.loads(f"x = {toml_value(math.inf)}")["x"] == math.inf
    assert tomllib.loads(f"x = {toml_value(-math.inf)}")["x"] == -math.inf
    assert math.isnan(tomllib.loads(f"x = {toml_value(math.nan)}")["x"])


def test_paths_are_strings_and_keys_are_bare_only_when_safe(tmp_path: Path) -> None:
    assert tomllib.loads(to_toml({"store": {"path": tmp_path / "h.sqlite3"}})) == {
        "store": {"path": str(tmp_path / "h.sqlite3")}
    }
    assert toml_key("poll_timeout") == "poll_timeout"
    assert toml_key("bare-key_09") == "bare-key_09"
    assert toml_key("chat.input_tokens") == '"chat.input_tokens"'
    assert toml_key("ключ") == '"ключ"'  # str.isalnum() would call it bare; TOML does not
    assert toml_key("") == '""'


@pytest.mark.parametrize("value", [None, object(), {1, 2}, b"bytes"])
def test_what_toml_cannot_say_is_refused(value: object) -> None:
    with pytest.raises(TypeError, match="TOML has no value"):
        to_toml({"x": value})
    with pytest.raises(TypeError, match="TOML has no value"):
        to_toml({"table": {"list": [1, value]}})


def test_non_string_keys_and_lone_surrogates_are_refused() -> None:
    with pytest.raises(TypeError, match="TOML keys are strings"):
        to_toml({"plugins": {1: "one"}})
    with pytest.raises(UnicodeEncodeError):
        to_toml({"x": "half a pair \ud83c"})


async def test_write_config_is_a_bot_toml_whose_secrets_come_from_env(
    bot_harness: BotHarness, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    path = bot_harness.write_config(
        "sub.toml",
        ["history", "chat"],
        bot={"poll_timeout": 1},
        store={"path": bot_harness.workdir / "h.sqlite3"},
        settings={"chat": {"stream": False}},
    )
    assert path == bot_harness.workdir / "sub.toml"
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    assert raw["bot"]["token"] == "${TELEGRAM_BOT_TOKEN}"
    assert raw["openai"]["api_key"] == "${OPENAI_API_KEY}"
    assert telegram.token not in path.read_text() and openai_server.api_key not in path.read_text()
    env = bot_harness.env(EXTRA="1")
    assert env["EXTRA"] == "1" and env["PATH"] == os.environ["PATH"]
    config = load_config(path, environ=env)
    assert config.bot.token.get_secret_value() == telegram.token
    assert config.openai.api_key is not None
    assert config.openai.api_key.get_secret_value() == openai_server.api_key
    assert config.bot.base_url == telegram.base_url and config.bot.poll_timeout == 1
    assert config.openai.base_url == openai_server.base_url
    assert config.bot.plugins == ["history", "chat"]
    assert config.plugins == {"chat": {"stream": False}}
    assert raw["store"]["path"] == str(bot_harness.workdir / "h.sqlite3")


async def test_spawn_runs_the_real_bot_against_the_fakes(
    bot_harness: BotHarness, telegram: FakeTelegram
) -> None:
    """One call writes the config, one starts `botcore run`; the harness kills what is left."""
    bot_harness.write_config(plugins=["history"], store={"backend": "memory"})
    process = await bot_harness.spawn()
    assert (await telegram.reply_to("/start", timeout=30)).text.startswith("Hi!")
    assert process.returncode is None
    await bot_harness.stop_all()
    assert process.returncode is not None
