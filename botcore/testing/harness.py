"""Run the real bot in-process against the fake servers: what the pytest fixtures are made of."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from botcore.app import App
from botcore.config import Config, validate
from botcore.runner import Runner
from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram


class RunningBot:
    """A started bot: its App (plugins, settings, history store) and the Runner that drives it."""

    def __init__(self, app: App, runner: Runner) -> None:
        self.app = app
        self.runner = runner
        self.stopped = False

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

    def config_dict(
        self,
        plugins: Iterable[str] = (),
        *,
        bot: Mapping[str, Any] | None = None,
        openai: Mapping[str, Any] | None = None,
        store: Mapping[str, Any] | None = None,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The dict form of a bot.toml for these fakes; `bot`, `openai`, `store` override keys."""
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
        """Start a bot with these plugins and `[plugins.<name>]` settings; it polls the fake."""
        config = validate(
            Config,
            self.config_dict(plugins, bot=bot, openai=openai, store=store, settings=settings),
        )
        return await self.start_config(config)

    async def start_config(self, config: Config) -> RunningBot:
        """Start a bot from a ready Config."""
        app = App(config)
        runner = Runner(app)
        running = RunningBot(app, runner)
        self.running.append(running)
        await runner.start()
        return running

    async def stop_all(self) -> None:
        """Stop every bot this harness started."""
        for running in reversed(self.running):
            await running.stop()
