"""bot.toml: every kind of bad config stops start-up with exit 2 and one clear line, never a secret."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel, ConfigDict, Field
from sample_plugins import loose

from botcore.cli import main
from botcore.config import Config, ConfigError, StrictModel, load_config, loose_models, validate
from botcore.runtime import Runtime

TOKEN = "123456:SECRET-token-value"
KEY = "sk-very-secret-key"
ENV = {"TELEGRAM_BOT_TOKEN": TOKEN, "OPENAI_API_KEY": KEY}
# What `botcore plugins` reports for first-party plugins: the version being released.
PYPROJECT = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
REPO = Path(__file__).resolve().parent.parent

GOOD = """
[bot]
token = "${TELEGRAM_BOT_TOKEN}"
plugins = ["history", "chat"]
[openai]
api_key = "${OPENAI_API_KEY}"
[store]
path = "h.sqlite3"
[plugins.history]
scope = "chat"
"""


def run_cli(
    tmp_path: Path,
    text: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str = "check",
) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "bot.toml"
    path.write_text(text, encoding="utf-8")
    code = main([command, "--config", str(path)])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


BAD = [
    (
        "unknown key",
        GOOD.replace("[openai]", "[openai]\nbase_ulr = 'x'"),
        "openai.base_ulr: unknown key (did you mean 'base_url'?)",
    ),
    (
        "unknown nested key",
        GOOD.replace(
            'plugins = ["history", "chat"]', 'plugins = ["history"]\n[bot.webhook]\nprot = 1'
        ),
        "bot.webhook.prot: unknown key (did you mean 'port'?)",
    ),
    (
        "unknown top-level table",
        GOOD + "\n[opneai]\nx = 1\n",
        "opneai: unknown key (did you mean 'openai'?)",
    ),
    (
        "a plugin's table at the top level",
        GOOD + "\n[mcp.servers.files]\ncommand = 'x'\n",
        "mcp: unknown key (a plugin's settings go under [plugins.mcp])",
    ),
    (
        "unknown plugin",
        GOOD.replace('"chat"]', '"chta"]'),
        "bot.plugins[1]: unknown plugin 'chta' (did you mean 'chat'?)",
    ),
    (
        "unknown plugin table",
        GOOD + "\n[plugins.histroy]\n",
        "plugins.histroy: no such plugin (did you mean 'history'?)",
    ),
    (
        "plugin key typo",
        GOOD.replace('scope = "chat"', "max_mesages = 3"),
        "plugins.history.max_mesages: unknown key (did you mean 'max_messages'?)",
    ),
    (
        "wrong type",
        GOOD.replace("[openai]", "[openai]\ntimeout = 'soon'"),
        "openai.timeout: Input should be a valid number",
    ),
    (
        "wrong plugin type",
        GOOD.replace('scope = "chat"', 'max_messages = "many"'),
        "plugins.history.max_messages: Input should be a valid integer",
    ),
    (
        "bad choice",
        GOOD.replace("[openai]", "[openai]").replace(
            'plugins = ["history", "chat"]', 'plugins = []\nmode = "pull"'
        ),
        "bot.mode: Input should be 'polling' or 'webhook'",
    ),
    ("missing token", GOOD.replace('token = "${TELEGRAM_BOT_TOKEN}"', ""), "bot.token: required"),
    (
        "missing env var",
        GOOD.replace("TELEGRAM_BOT_TOKEN", "NO_SUCH_VAR_X"),
        "bot.token: environment variable NO_SUCH_VAR_X is not set",
    ),
    (
        "bad token",
        GOOD.replace('"${TELEGRAM_BOT_TOKEN}"', '"${OPENAI_API_KEY}"'),
        "bot.token: does not look like a bot token",
    ),
    (
        "duplicate plugin",
        GOOD.replace('"chat"]', '"chat", "chat"]'),
        "bot.plugins: plugin 'chat' is listed twice",
    ),
    ("invalid toml", GOOD + "\n[bot\n", "invalid TOML"),
    (
        "chat without an api key",
        GOOD.replace('api_key = "${OPENAI_API_KEY}"', ""),
        "openai.api_key: required by the enabled plugins",
    ),
    (
        "document embeddings without an api key",
        GOOD.replace('api_key = "${OPENAI_API_KEY}"', "").replace('"chat"]', '"documents"]')
        + '[plugins.documents]\nembeddings = "text-embedding-3-small"\n',
        "openai.api_key: required by the enabled plugins",
    ),
    (
        "webhook without url",
        GOOD.replace('plugins = ["history", "chat"]', 'plugins = []\nmode = "webhook"'),
        'mode "webhook" needs bot.webhook.url',
    ),
    (
        "bad language",
        GOOD.replace('plugins = ["history", "chat"]', 'plugins = []\nlanguage = "xx"'),
        "bot.language: not a language botcore speaks (choose from en, ru)",
    ),
    (
        "not a dict plugin table",
        "plugins = {history = 3}\n" + GOOD.split("[plugins.history]")[0],
        "plugins.history: Input should be a valid dictionary",
    ),
]


@pytest.mark.parametrize(("label", "text", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_exits_2_with_one_line(
    label: str,
    text: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, output = run_cli(tmp_path, text, monkeypatch, capsys)
    assert code == 2
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("botcore: error: ")
    assert expected in lines[0]
    assert "Traceback" not in output
    assert TOKEN not in output and KEY not in output
    assert TOKEN.split(":")[1] not in output


def test_check_tries_the_webhook_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook = (
        'mode = "webhook"\n[bot.webhook]\nurl = "https://bot.example.com/tg"\n'
        'cert = "missing.pem"\n'
    )
    text = GOOD.replace('plugins = ["history", "chat"]', "plugins = []\n" + webhook)
    code, output = run_cli(tmp_path, text, monkeypatch, capsys)
    assert code == 2, output
    assert output.strip() == "botcore: error: bot.webhook.cert: no such file: missing.pem"


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such file" in capsys.readouterr().err


def test_good_config_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run_cli(tmp_path, GOOD, monkeypatch, capsys)
    assert code == 0, output
    assert "ok: 3 plugins (welcome, history, chat)" in output
    assert "/clear" in output


def test_plugins_lists_hooks_and_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run_cli(tmp_path, GOOD, monkeypatch, capsys, command="plugins")
    assert code == 0, output
    assert f"history {VERSION} (first-party)" in output
    assert "commands: /clear" in output
    assert "tools:    -" in output
    assert (
        "hooks:    button_pressed, register_commands, register_handlers, register_texts, "
        "settings_model, startup" in output
    )
    assert "commands: /retry, /mode, /model, /reasoning" in output


def test_plugins_lists_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.replace('"history", "chat"', '"chat", "image"').split("[plugins.history]")[0]
    code, output = run_cli(tmp_path, text, monkeypatch, capsys, command="plugins")
    assert code == 0, output
    assert "tools:    draw_image" in output


def test_env_expansion_defaults_and_escapes() -> None:
    from botcore.config import expand_env

    env = {"A": "1"}
    assert expand_env({"x": "${A}-${B:-two}-$${A}"}, env) == {"x": "1-two-${A}"}
    with pytest.raises(ConfigError, match=r"^y\[0\]: environment variable B is not set$"):
        expand_env({"y": ["${B}"]}, env)


def test_secret_in_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    path.write_text('[bot]\ntoken = "123:abc"\n[openai]\napi_key = 12345678987654321\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert "12345678987654321" not in str(info.value)
    assert str(info.value).startswith("openai.api_key: ")


def test_shipped_bot_toml_checks_with_env(
    tmp_path: Path, bot_output: Callable[[str], None]
) -> None:
    """The README's promise: `botcore check` exits 0 on the shipped bot.toml with the two variables set."""
    result = subprocess.run(
        [sys.executable, "-m", "botcore", "check", "--config", str(REPO / "bot.toml")],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", **ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "welcome, access, admin, usage, history, chat, image, voice" in result.stdout
    bot_output(result.stderr)  # every plugin started and stopped without a leak


def test_shipped_bot_toml_without_token_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "botcore", "check", "--config", str(REPO / "bot.toml")],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "botcore: error: bot.token: environment variable TELEGRAM_BOT_TOKEN is not set"
    )


LOOSE = "sample_plugins.loose"
LOOSE_WARNING = (
    f"plugin '{LOOSE}': its settings accept unknown keys, so a misspelt key in "
    f"[plugins.{LOOSE}] is silently ignored; derive Settings, Limits from botcore.StrictModel"
)


def test_settings_that_accept_unknown_keys_are_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = validate(
        Config,
        {
            "bot": {"token": TOKEN, "plugins": [LOOSE, "history", "chat", "usage"]},
            "plugins": {LOOSE: {"max_dise": 5}},
        },
    )
    with caplog.at_level(logging.WARNING, logger="botcore.runtime"):
        app = asyncio.run(Runtime.create(config))
    assert app.settings(loose.Settings).max_dice == 20  # the typo was ignored: hence the warning
    found = [r for r in caplog.records if "accept unknown keys" in r.getMessage()]
    assert [r.getMessage() for r in found] == [LOOSE_WARNING]  # first-party plugins are strict
    assert found[0].levelno == logging.WARNING


def test_check_prints_the_warning(tmp_path: Path) -> None:
    (tmp_path / "bot.toml").write_text(
        f'[bot]\ntoken = "{TOKEN}"\nplugins = ["{LOOSE}"]\n[plugins."{LOOSE}"]\nmax_dise = 5\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "botcore", "check", "--config", "bot.toml"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "tests")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert LOOSE_WARNING in result.stderr
    assert result.stdout.startswith(f"ok: 2 plugins (welcome, {LOOSE})")


def test_loose_models_are_found_inside_strict_ones() -> None:
    class Free(BaseModel):
        x: int = 0

    class Ignoring(BaseModel):
        model_config = ConfigDict(extra="ignore")

    class Inner(StrictModel):
        free: Free | None = None

    class Outer(StrictModel):
        inners: list[Inner] = Field(default_factory=list)
        by_name: dict[str, Ignoring] = Field(default_factory=dict)
        again: Annotated[Inner | None, "meta"] = None

    assert loose_models(Outer) == [Free, Ignoring]
    assert loose_models(Inner) == [Free]
    assert loose_models(StrictModel) == []
    assert loose_models(Config) == []  # bot.toml's own tables are strict throughout
