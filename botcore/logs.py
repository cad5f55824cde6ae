"""Logging set-up that keeps secrets (bot token, API keys) out of every line."""

from __future__ import annotations

import logging
from collections.abc import Iterable

QUIET = (
    "httpx",
    "httpx2",
    "httpcore",
    "openai",
    "telegram.Bot",
    "telegram.ext.ExtBot",
    "telegram.ext.Updater",
    "aiohttp.access",
)
"""Loggers that print request URLs (the bot token is in them), request parameters (the webhook's
secret_token) or per-request noise: held at WARNING even when bot.log_level is DEBUG."""


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (6 characters or longer) replaced by "***"."""
    for secret in sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then replaces every known secret with "***"."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


def setup_logging(level: str, secrets: Iterable[str]) -> None:
    """Log to stderr at `level`, secrets redacted, chatty HTTP loggers held at WARNING."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
