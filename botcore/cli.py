"""`botcore run | check | plugins | config`: the command line an operator uses."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from botcore.config import Config, StartupError, load_config

DEFAULT_CONFIG = "bot.toml"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `botcore` command; returns the exit code (2 for a bad config)."""
    parser = argparse.ArgumentParser(prog="botcore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the bot"),
        ("check", "validate bot.toml and load every plugin, without contacting Telegram"),
        ("plugins", "list the loaded plugins, their hooks and commands"),
        ("config", "show the effective config: bot.toml, defaults, settings changed in chat"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="path to bot.toml")
    args = parser.parse_args(argv)
    try:
        config = _load(Path(args.config))
        if args.command == "run":
            return _run(config)
        if args.command == "check":
            return asyncio.run(_check(config))
        if args.command == "config":
            return asyncio.run(_config(config))
        return _plugins(config)
    except StartupError as exc:
        print(f"botcore: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _load(path: Path) -> Config:
    """Read .env files (beside the config and here) without overriding the environment."""
    from dotenv import load_dotenv

    for env_file in {path.parent / ".env", Path(".env")}:
        if env_file.is_file():
            load_dotenv(env_file, override=False)
    return load_config(path)


def _run(config: Config) -> int:
    from botcore.app import App
    from botcore.logs import setup_logging
    from botcore.runner import Runner

    setup_logging(config.bot.log_level, config.secrets())
    runner = Runner(App(config))
    asyncio.run(runner.run())
    return 0


async def _check(config: Config) -> int:
    from botcore.app import App

    logging.basicConfig(level=logging.WARNING)
    app = App(config)
    try:
        await app.startup()
    finally:
        await app.shutdown()
    commands = ", ".join(f"/{name}" for name in app.commands)
    print(
        f"ok: {len(app.plugins.names)} plugins ({', '.join(app.plugins.names)}); commands {commands}"
    )
    return 0


async def _config(config: Config) -> int:
    """Print the effective config as JSON (secrets masked); the settings changed in chat are
    read from the store and named on stderr."""
    import json

    from botcore.app import App

    logging.basicConfig(level=logging.WARNING)
    app = App(config)
    try:
        await app.store.open()
        await app.load_overrides()
    except Exception as exc:
        raise StartupError(f"store: cannot read: {type(exc).__name__}: {exc}") from None
    finally:
        await app.store.close()
    print(json.dumps(app.effective_config(), indent=2, ensure_ascii=False))
    for path in sorted(app.overrides):
        print(f"changed in chat: {path}", file=sys.stderr)
    return 0


def _plugins(config: Config) -> int:
    from botcore.app import App

    app = App(config)
    for info in app.plugins.infos:
        print(f"{info.name} {info.version} ({info.source})")
        print(f"  module:   {info.module.__name__}")
        print(f"  hooks:    {', '.join(info.hooks) or '-'}")
        print(f"  commands: {', '.join('/' + c for c in info.commands) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
