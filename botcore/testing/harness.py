"""Run the real bot against the fake servers, in-process or as its own `botcore` process: what
the pytest fixtures are made of."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from botcore.app import App
from botcore.config import Config, validate
from botcore.runner import Runner
from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.toml_writer import to_toml

TOKEN_VAR = "TELEGRAM_BOT_TOKEN"
API_KEY_VAR = "OPENAI_API_KEY"


class RunningBot:
    """A started bot: its App (plugins, settings, store) and the Runner that drives it."""

    def __init__(self, app: App, runner: Runner) -> None:
        self.app = app
        """The bot as plugins see it: `app.settings(Model)`, `app.store`, `app.plugins`..."""
        self.runner = runner
        """What polls the fake Telegram and feeds the updates to the pipeline."""
        self.stopped = False
        """True once `stop()` was called (by the test, or by the harness at the end)."""

    async def stop(self) -> None:
        """Stop polling, finish the updates in flight, shut the plugins down."""
        if not self.stopped:
            self.stopped = True
            await self.runner.stop()


class BotHarness:
    """Builds configs that point at the fakes and starts bots from them; stops them all at the end."""

    def __init__(self, telegram: FakeTelegram, openai: FakeOpenAI, workdir: Path) -> None:
        self.telegram = telegram
        self.openai = openai
        self.workdir = workdir
        self.running: list[RunningBot] = []
        self.processes: list[asyncio.subprocess.Process] = []

    def config_dict(
        self,
        plugins: Iterable[str] = (),
        *,
        bot: Mapping[str, Any] | None = None,
        openai: Mapping[str, Any] | None = None,
        store: Mapping[str, Any] | None = None,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The dict form of a bot.toml for these fakes, not yet validated: `plugins` is
        `[bot] plugins`; `bot` and `openai` add to or override keys of `[bot]` and `[openai]`
        (token, base URLs, fast polling and streaming are preset); `store` is the `[store]` table
        (empty: SQLite, `botcore.sqlite3` in the working directory); `settings` maps a plugin's
        name to its `[plugins.<name>]` table."""
        return {
            "bot": {
                "token": self.telegram.token,
                "plugins": list(plugins),
                "base_url": self.telegram.base_url,
                "base_file_url": self.telegram.base_file_url,
                "poll_timeout": 5,
                "stream_edit_interval": 0.2,
                "group_stream_edit_interval": 0.5,
                **(bot or {}),
            },
            "openai": {
                "api_key": self.openai.api_key,
                "base_url": self.openai.base_url,
                "max_retries": 0,
                "timeout": 10,
                **(openai or {}),
            },
            "store": dict(store or {}),
            "plugins": {name: dict(table) for name, table in (settings or {}).items()},
        }

    async def start(
        self,
        plugins: Iterable[str] = (),
        *,
        bot: Mapping[str, Any] | None = None,
        openai: Mapping[str, Any] | None = None,
        store: Mapping[str, Any] | None = None,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> RunningBot:
        """Start the real bot from `config_dict(...)` (same parameters) and return it once it
        polls the fake Telegram; a bad setting raises ConfigError naming its dotted path."""
        return await self.start_config(
            self.config_dict(plugins, bot=bot, openai=openai, store=store, settings=settings)
        )

    async def start_config(self, config: Config | Mapping[str, Any]) -> RunningBot:
        """Start the real bot from a Config, or from the dict form of a bot.toml (such as
        `config_dict(...)` returns, changed as the test needs), validated as bot.toml is."""
        if not isinstance(config, Config):
            config = validate(Config, dict(config))
        app = App(config)
        runner = Runner(app)
        running = RunningBot(app, runner)
        self.running.append(running)
        await runner.start()
        return running

    def write_config(
        self,
        path: str | os.PathLike[str] = "bot.toml",
        plugins: Iterable[str] = (),
        *,
        bot: Mapping[str, Any] | None = None,
        openai: Mapping[str, Any] | None = None,
        store: Mapping[str, Any] | None = None,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Path:
        """Write `config_dict(...)` as a bot.toml (relative paths are in the working directory)
        for a bot run as its own process; the secrets are `${TELEGRAM_BOT_TOKEN}` and
        `${OPENAI_API_KEY}` references, as in a real deployment, and `env()` holds their values.
        Other values are written as given, so the bot expands their `${VAR}`s too (`$$` is a `$`)."""
        config = self.config_dict(
            plugins,
            bot={"token": f"${{{TOKEN_VAR}}}", **(bot or {})},
            openai={"api_key": f"${{{API_KEY_VAR}}}", **(openai or {})},
            store=store,
            settings=settings,
        )
        target = self.workdir / path
        target.write_text(to_toml(config), encoding="utf-8")
        return target

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a bot process: os.environ, the fakes' token and API key under the
        names `write_config` refers to, and `extra` (e.g. PYTHONPATH, BOTCORE_STORE_URL)."""
        return {
            **os.environ,
            TOKEN_VAR: self.telegram.token,
            API_KEY_VAR: self.openai.api_key,
            **extra,
        }

    async def spawn(
        self,
        config: str | os.PathLike[str] | None = "bot.toml",
        *args: str,
        command: str = "run",
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> asyncio.subprocess.Process:
        """Start `python -m botcore <command> --config <config> *args` in the working directory
        (config None: no --config, the command's default) with `env` (default `env()`); `kwargs`
        go to `asyncio.create_subprocess_exec` (stdin, stdout, stderr). A process still running
        when the harness stops is killed."""
        options = [] if config is None else ["--config", os.fspath(config)]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "botcore", command, *options, *args,
            cwd=self.workdir, env=dict(self.env() if env is None else env), **kwargs,
        )  # fmt: skip
        self.processes.append(process)
        return process

    async def stop_all(self) -> None:
        """Stop every bot this harness started; kill the processes it spawned that still run."""
        for running in reversed(self.running):
            await running.stop()
        for process in self.processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
