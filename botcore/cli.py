"""`botcore run | check | plugins | config | console | new-plugin`: the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from botcore.config import Config, StartupError, load_config

DEFAULT_CONFIG = "bot.toml"
EXIT_CODES = """exit codes: 0 stopped (SIGINT/SIGTERM); 2 the config is wrong (bot.toml, a plugin's
settings, bot.base_url not a Bot API server...); 3 Telegram rejected the token (at start-up,
or later: revoked); 4 Telegram
stayed unreachable for bot.startup_timeout seconds (by default start-up retries network errors
for ever, waiting 1, 2, 4... up to 60 s)"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `botcore` command; returns the exit code (see EXIT_CODES)."""
    parser = argparse.ArgumentParser(prog="botcore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {}
    for name, text in (
        ("run", "run the bot"),
        ("check", "validate bot.toml and load every plugin, without contacting Telegram"),
        ("plugins", "list the loaded plugins, their hooks, commands and tools"),
        ("console", "chat with the bot in the terminal, through the real plugins, no Telegram"),
        ("config", "show the effective config: bot.toml, defaults, settings changed in chat"),
    ):
        cmd = commands[name] = sub.add_parser(
            name,
            help=text,
            description=text,
            epilog=EXIT_CODES if name == "run" else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="path to bot.toml")
    commands["run"].add_argument(
        "--reload",
        action="store_true",
        help="development: restart when a .py file or the config changes",
    )
    console = commands["console"]
    console.add_argument("--user-id", type=int, default=1, help="the console user's id (1)")
    console.add_argument(
        "--language", default=None, help="the user's Telegram language code (default: bot.language)"
    )
    console.add_argument(
        "--files",
        type=Path,
        default=Path("botcore-console"),
        help="where photos, voice and documents the bot sends are saved (./botcore-console)",
    )
    console.add_argument(
        "--verbose", "-v", action="store_true", help="log at bot.log_level (default: warnings only)"
    )
    new_plugin = sub.add_parser(
        "new-plugin",
        help="create a pip-installable plugin package botcore-NAME",
        description="create a pip-installable plugin package botcore-NAME, with tests",
    )
    new_plugin.add_argument("name", help="the plugin name: lowercase letters, digits, _")
    new_plugin.add_argument(
        "--dir", type=Path, default=Path("."), help="where to create botcore-NAME/ (.)"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "new-plugin":
            return _new_plugin(args.name, args.dir)
        if args.command == "run" and args.reload:
            from botcore.testing.reload import run_with_reload

            _load(Path(args.config))  # a bad config fails here, before watching
            return run_with_reload(Path(args.config))
        if args.command == "console":
            return _console(args)
        config = _load(Path(args.config))
        if args.command == "run":
            return _run(config)
        if args.command == "check":
            return asyncio.run(_check(config))
        if args.command == "config":
            return asyncio.run(_config(config))
        return asyncio.run(_plugins(config))
    except StartupError as exc:
        print(f"botcore: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _load(path: Path, **bot_overrides: Any) -> Config:
    """Read .env files (beside the config and here) without overriding the environment."""
    from dotenv import load_dotenv

    for env_file in {path.parent / ".env", Path(".env")}:
        if env_file.is_file():
            load_dotenv(env_file, override=False)
    return load_config(path, bot_overrides=bot_overrides)


def _new_plugin(name: str, directory: Path) -> int:
    from botcore.testing.scaffold import ScaffoldError, new_plugin

    try:
        created = new_plugin(name, directory)
    except ScaffoldError as exc:
        print(f"botcore: error: {exc}", file=sys.stderr)
        return 2
    print(f"created {created}; try it: cd {created} && pip install -e '.[test]' && pytest")
    return 0


def _console(args: argparse.Namespace) -> int:
    from botcore.logs import setup_logging
    from botcore.testing.console import BOT_OVERRIDES, ConsoleOptions, run_console

    config = _load(Path(args.config), **BOT_OVERRIDES)
    level = config.bot.log_level if args.verbose else "WARNING"
    setup_logging(level, config.secrets())
    options = ConsoleOptions(
        user_id=args.user_id,
        language=args.language,
        files=args.files,
        interactive=sys.stdin.isatty(),
    )
    try:
        return asyncio.run(run_console(config, options))
    except KeyboardInterrupt:  # Ctrl-C: the bot is stopped on the way out; a clean exit
        print(file=sys.stderr)
        return 0


def _run(config: Config) -> int:
    from botcore.logs import setup_logging
    from botcore.runner import Runner
    from botcore.runtime import Runtime

    setup_logging(config.bot.log_level, config.secrets(), config.bot.log_format)
    runner = Runner(Runtime(config))
    asyncio.run(runner.run())
    return 0


async def _check(config: Config) -> int:
    from botcore.runtime import Runtime
    from botcore.store import describe_store

    logging.basicConfig(level=logging.WARNING)
    webhook = config.bot.webhook
    if config.bot.mode == "webhook" and webhook.cert:  # a file that cannot serve HTTPS
        from botcore.runner import tls_context

        tls_context(webhook.cert, webhook.key)
    app = Runtime(config)
    try:
        await app.startup()
        # What start-up reached (an MCP server it could not reach was logged above).
        tools = [d["function"]["name"] for d in app.tools.definitions()]
    finally:
        await app.shutdown()
    commands = ", ".join(f"/{name}" for name in app.commands)
    print(
        f"ok: {len(app.plugins.names)} plugins ({', '.join(app.plugins.names)}); commands {commands}"
    )
    print(f"store: {describe_store(config.store)}")
    if app.tools:
        print(f"tools: {', '.join(tools) or '-'}")
    return 0


async def _config(config: Config) -> int:
    """Print the effective config as JSON (secrets masked); the settings changed in chat are
    read from the store and named on stderr."""
    import json

    from botcore.runtime import Runtime
    from botcore.store import NewerSchema

    logging.basicConfig(level=logging.WARNING)
    app = await Runtime.create(config)
    try:
        await app.store.open()
        await app.load_overrides()
    except NewerSchema as exc:
        raise StartupError(f"store: {exc}") from None
    except Exception as exc:
        raise StartupError(f"store: cannot read: {type(exc).__name__}: {exc}") from None
    finally:
        await app.store.close()
    print(json.dumps(app.effective_config(), indent=2, ensure_ascii=False))
    for path in sorted(app.overrides):
        print(f"changed in chat: {path}", file=sys.stderr)
    return 0


async def _plugins(config: Config) -> int:
    from botcore.runtime import Runtime
    from botcore.store import describe_store

    logging.basicConfig(level=logging.ERROR)
    app = await Runtime.create(config)
    for info in app.plugins.infos:
        print(f"{info.name} {info.version} ({info.source})")
        print(f"  module:   {info.module.__name__}")
        print(f"  hooks:    {', '.join(info.hooks) or '-'}")
        print(f"  commands: {', '.join('/' + c for c in info.commands) or '-'}")
        print(f"  tools:    {', '.join(info.tools) or '-'}")
        for plugin, source in app.tools.sources:  # tools known at run time: the source tells
            if plugin == info.name:
                for line in await source.describe():
                    print(f"    {line}")
    print(f"store: {describe_store(config.store)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
