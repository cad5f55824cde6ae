"""`botcore run --reload`: for development, restart the bot when its code or its config changes.

The bot runs as a child process (`botcore run`); a watcher (watchfiles: inotify, debounced) sees
.py files change in the project (the config's folder) and in editable installs of plugins, and the
config and .env files. A bot that exits (a typo in the code) waits for the next change.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import NoReturn
from urllib.parse import unquote, urlparse

from botcore.plugins import ENTRY_POINT_GROUP

IGNORE_DIRS = ("site-packages", "venv", "build", "dist", ".eggs", ".ruff_cache")
STOP_TIMEOUT = 15.0
"""Seconds a bot gets to finish its turns on the way to a restart before it is killed."""


def run_with_reload(config: Path) -> int:
    """Run the bot and restart it on every change until interrupted; returns the exit code."""
    from watchfiles import Change, DefaultFilter, watch

    config = config.resolve()
    roots = watched_roots(config.parent, editable_plugin_roots())
    files = {config, config.parent / ".env"}
    # No .venv, .git, caches or editor droppings, nor any virtualenv or build output.
    default = DefaultFilter(ignore_dirs=(*DefaultFilter.ignore_dirs, *IGNORE_DIRS))

    def wanted(change: Change, path: str) -> bool:
        return default(change, path) and (path.endswith(".py") or Path(path) in files)

    _say(f"watching {', '.join(str(r) for r in roots)} for changes")
    signal.signal(signal.SIGTERM, _interrupt)
    bot = _start(config)
    reported = False
    try:
        for changes in watch(*roots, watch_filter=wanted, rust_timeout=500, yield_on_timeout=True):
            if not changes:  # a quiet moment: tell once if the bot died (a typo) and wait
                if not reported and bot.poll() is not None:
                    reported = True
                    _say(f"the bot exited with code {bot.returncode}; waiting for a change")
                continue
            names = sorted({Path(path).name for _, path in changes})
            _say(f"{', '.join(names)} changed: restarting the bot")
            _stop(bot)
            bot, reported = _start(config), False
    except KeyboardInterrupt:
        pass
    finally:
        _stop(bot)
    return 0


def editable_plugin_roots() -> list[Path]:
    """Source folders of installed packages that provide botcore plugins and are editable."""
    roots = []
    for dist in metadata.distributions():
        if not any(ep.group == ENTRY_POINT_GROUP for ep in dist.entry_points):
            continue
        text = dist.read_text("direct_url.json")
        if not text:
            continue
        try:
            info = json.loads(text)
        except ValueError:
            continue
        if info.get("dir_info", {}).get("editable") and str(info.get("url", "")).startswith(
            "file:"
        ):
            roots.append(Path(unquote(urlparse(info["url"]).path)))
    return roots


def watched_roots(project: Path, others: Iterable[Path]) -> list[Path]:
    """The project folder and the others that exist, without folders inside one already watched."""
    found: list[Path] = []
    for root in sorted({project.resolve(), *(p.resolve() for p in others if p.is_dir())}):
        if not any(root.is_relative_to(kept) for kept in found):
            found.append(root)
    return found


def _start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "botcore", "run", "--config", str(config)])


def _stop(bot: subprocess.Popen[bytes]) -> None:
    """Stop the bot as Ctrl-C would (it finishes its turns), killing it if it hangs."""
    if bot.poll() is not None:
        return
    bot.send_signal(signal.SIGINT)
    try:
        bot.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _say(f"the bot did not stop within {STOP_TIMEOUT:.0f} s: killing it")
        bot.kill()
        bot.wait()


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def _say(text: str) -> None:
    print(f"botcore: {text}", file=sys.stderr, flush=True)
