"""Session-wide secret check: every log record of the whole run (at DEBUG and above) and the output
of every bot subprocess are scanned at the end for the kit's fake bot token and API key. (Leaked
resources are caught by the kit's pytest plugin, botcore.testing.pytest_plugin.) And how many
pytest-xdist workers run the suite."""

from __future__ import annotations

import inspect
import logging
import os
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from botcore.logs import QUIET
from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.leaks import leak_lines
from botcore.testing.stores import stop_worker_servers

pytest_plugins = ["pytester"]

_TOKEN: str = inspect.signature(FakeTelegram).parameters["token"].default
_KEY: str = inspect.signature(FakeOpenAI).parameters["api_key"].default
SECRETS = [_TOKEN, _TOKEN.partition(":")[2], _KEY, "webhook-secret-under-test"]
"""The kit's defaults (and the webhook secret tests/test_security.py configures)."""


class _Collector(logging.Handler):
    """Keeps what would reach a log line in production: records of the URL-printing libraries
    (botcore.logs.QUIET) only at WARNING and above, as setup_logging holds them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        quiet = any(record.name == q or record.name.startswith(q + ".") for q in QUIET)
        if quiet and record.levelno < logging.WARNING:
            return
        try:
            text = record.getMessage()
        except Exception:
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(record.exc_info[1]))
        check(text, f"log record {record.name}:{record.lineno}", self.leaks)


def check(text: str, where: str, leaks: list[str]) -> None:
    """Note every secret found in `text`."""
    for secret in SECRETS:
        if secret in text:
            leaks.append(f"{where}: contains {secret[:3]}… ({text[:200]!r})")


_collector = _Collector()
_outputs: list[str] = []
_from_workers: list[str] = []
"""What the xdist workers found (in the controller, which reports it)."""


def pytest_sessionstart(session: pytest.Session) -> None:
    root = logging.getLogger()
    root.addHandler(_collector)
    root.setLevel(logging.DEBUG)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """An xdist worker finished: keep the leaks it found, reported with the controller's."""
    _from_workers.extend(getattr(node, "workeroutput", {}).get("botcore_secret_leaks", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_collector)
    leaks = [*_collector.leaks, *_from_workers]
    for index, output in enumerate(_outputs):
        check(output, f"bot subprocess output #{index}", leaks)
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its output is not shown, the controller's is
        workeroutput["botcore_secret_leaks"] = leaks
        return
    if leaks:
        print("\nSECRET LEAK: the bot token or an API key reached a log line:")
        for leak in leaks[:20]:
            print("  " + leak)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_worker_servers()


WORKERS = 8
"""xdist workers for `-n auto` (pyproject's addopts) on a run of more than one file. The tests
mostly wait (Telegram's flood limits in the fake, spawned bots, timeouts), so more workers than
cores pay: on 2 cores the suite took 4.6 min on 6 workers, 3.4 on 8, no less on 12."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """WORKERS; none (-n 0) for a run of one file or of tests in one, which would pay the
    workers' start-up for nothing. PYTEST_XDIST_AUTO_NUM_WORKERS or `-n N` decide instead."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    files = {arg.partition("::")[0] for arg in config.args}
    if len(files) == 1 and Path(config.invocation_params.dir, *files).is_file():
        return 0
    return WORKERS


@pytest.fixture
def bot_output() -> Iterator[Callable[[str], None]]:
    """Hand a bot subprocess's stdout/stderr to the session-wide secret scan; a line in it that
    reports a leaked resource fails the test at once."""

    def scan(output: str) -> None:
        _outputs.append(output)
        found = leak_lines(output)
        if found:
            pytest.fail("a subprocess leaked resources:\n" + "\n".join(found[:20]), pytrace=False)

    yield scan
