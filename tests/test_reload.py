"""`botcore run --reload`: the bot restarts when a plugin's code or the config changes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.reload import editable_plugin_roots, watched_roots

PLUGIN = '''
"""A plugin under development: /version tells which code and settings are running."""

import botcore


class Settings(botcore.StrictModel):
    greeting: str = "hello"


@botcore.hookimpl
def settings_model():
    return Settings


@botcore.hookimpl
def register_commands():
    return [botcore.Command("version", version)]


async def version(turn):
    return f"{turn.app.settings(Settings).greeting} from {VERSION}"


VERSION = "v1"
'''


def write_config(folder: Path, telegram: FakeTelegram, greeting: str, extra: str = "") -> None:
    (folder / "bot.toml").write_text(
        f"""
[bot]
token = "{telegram.token}"
plugins = ["greeter"]
base_url = "{telegram.base_url}"
base_file_url = "{telegram.base_file_url}"
poll_timeout = 1

[plugins.greeter]
greeting = "{greeting}"
{extra}
""",
        encoding="utf-8",
    )


class Lines:
    """A child's stderr, read line by line as the test waits for what it expects."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream
        self.seen: list[str] = []

    async def wait_for(self, text: str, timeout: float = 30) -> str:  # noqa: ASYNC109
        async def scan() -> str:
            while True:
                raw = await self.stream.readline()
                assert raw, f"the process ended before printing {text!r}:\n" + "".join(self.seen)
                line = raw.decode(errors="replace")
                self.seen.append(line)
                if text in line:
                    return line

        try:
            return await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {text!r} within {timeout}s:\n" + "".join(self.seen)) from None


async def test_reload_restarts_on_code_and_config_changes(
    telegram: FakeTelegram, tmp_path: Path, bot_output: Callable[[str], None]
) -> None:
    plugin = tmp_path / "greeter.py"
    plugin.write_text(PLUGIN, encoding="utf-8")
    write_config(tmp_path, telegram, "hello")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "botcore",
        "run",
        "--reload",
        "--config",
        "bot.toml",
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    lines = Lines(process.stderr)
    try:
        await lines.wait_for("botcore: watching")
        await lines.wait_for("is up")
        assert (await telegram.reply_to("/version", timeout=10)).text == "hello from v1"

        plugin.write_text(PLUGIN.replace('"v1"', '"v2"'), encoding="utf-8")
        await lines.wait_for("greeter.py changed: restarting the bot")
        await lines.wait_for("is up")
        assert (await telegram.reply_to("/version", timeout=10)).text == "hello from v2"

        write_config(tmp_path, telegram, "hi")
        await lines.wait_for("bot.toml changed: restarting the bot")
        await lines.wait_for("is up")
        assert (await telegram.reply_to("/version", timeout=10)).text == "hi from v2"

        # A broken edit does not end the session: the bot waits for the fix.
        write_config(tmp_path, telegram, "hi", extra="mistake = 1")
        await lines.wait_for("plugins.greeter.mistake: unknown key")
        await lines.wait_for("the bot exited with code 2; waiting for a change")
        write_config(tmp_path, telegram, "fixed")
        await lines.wait_for("is up")
        assert (await telegram.reply_to("/version", timeout=10)).text == "fixed from v2"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        await process.wait()
    output = "".join(lines.seen) + (await process.stderr.read()).decode(errors="replace")
    assert process.returncode == 0, output
    bot_output(output)  # every restart shut its bot down without a leak


def test_editable_plugin_packages_are_watched(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parent.parent
    roots = editable_plugin_roots()
    assert repo / "examples" / "botcore-dice" in roots  # installed with pip install -e
    # Folders inside a watched one are not watched twice; missing folders are skipped.
    inner = tmp_path / "plugins" / "mine"
    inner.mkdir(parents=True)
    assert watched_roots(tmp_path, [inner, tmp_path / "gone", repo]) == sorted([tmp_path, repo])
