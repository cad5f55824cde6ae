"""Resource-leak detection for tests: the log lines and records that say an HTTP session, a
connector, a task, a coroutine or a transport was dropped instead of closed.

aiohttp reports an unclosed session through `loop.call_exception_handler`, which the default
handler logs on the `asyncio` logger; a dropped pending task and a never-retrieved task exception
are logged the same way; a never-awaited coroutine and an error in a finalizer reach stderr
through `warnings` and `sys.unraisablehook`. `leak_lines` finds all of them in a process's output,
`LeakRecords` collects the in-process log records (the kit's pytest plugin uses both).
"""

from __future__ import annotations

import logging
import re

__all__ = ["LEAK", "LeakRecords", "leak_lines"]

LEAK = re.compile(
    r"unclosed (client session|connector|response|transport|file|<socket|event loop)"
    r"|Unclosed (client session|connector|response)"
    r"|Task was destroyed but it is pending"
    r"|Task exception was never retrieved"
    r"|coroutine .* was never awaited"
    r"|Event loop is closed"
    r"|Exception ignored in"
    r"|ResourceWarning",
    re.IGNORECASE,
)
"""One line of evidence that a resource leaked (case-insensitive)."""


def leak_lines(text: str) -> list[str]:
    """The lines of `text` (a process's stderr or log) that report a leak."""
    return [line for line in text.splitlines() if LEAK.search(line)]


class LeakRecords(logging.Handler):
    """Keeps every log record (of the loggers it is added to) whose message reports a leak."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        if LEAK.search(text):
            self.found.append(f"{record.levelname} {record.name}: {text}")

    def take(self) -> list[str]:
        """What was found since the last call."""
        found, self.found = self.found, []
        return found
