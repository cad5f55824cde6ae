"""Logging set-up: plain key=value lines or one JSON object per line, secrets and what users
write kept out of both.

A record may carry structured fields (`log.info("update", extra={"fields": {...}})`): the plain
format appends them as key=value, the JSON format puts them at the top level of the object.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from telegram import TelegramObject

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

PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class NoUserText(logging.Filter):
    """Puts a short name (`Update 17`) in place of a Telegram object in a record's arguments:
    python-telegram-bot logs whole updates at DEBUG ("Processing update Update(... text=...)"),
    and what users write must never reach a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, TelegramObject) for a in args):
            record.args = tuple(_named(a) if isinstance(a, TelegramObject) else a for a in args)
        elif isinstance(args, Mapping) and any(
            isinstance(a, TelegramObject) for a in args.values()
        ):
            record.args = {
                k: _named(a) if isinstance(a, TelegramObject) else a for k, a in args.items()
            }
        return True


def _named(value: TelegramObject) -> str:
    """`Update 17`, `Message 5`, or the class name alone: no field that a user wrote."""
    number = getattr(value, "update_id", None) or getattr(value, "message_id", None)
    name = type(value).__name__
    return f"{name} {number}" if isinstance(number, int) else name


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (6 characters or longer) replaced by "***"."""
    return _replace(text, redaction_order(secrets))


def _replace(text: str, ordered: list[str]) -> str:
    for secret in ordered:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def redaction_order(secrets: Iterable[str]) -> list[str]:
    """The secrets worth redacting (6 characters or longer), longest first."""
    return sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)


def plain_fields(fields: Mapping[str, Any]) -> str:
    """{"chat": 42, "outcome": "answered"} -> 'chat=42 outcome=answered'. None and empty values
    are left out, a dict becomes key.sub=value, a list is comma-joined; values with spaces,
    quotes or '=' are JSON-quoted, so a line always splits back into its pairs."""
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        kind = type(value)
        if kind is int:  # the common case, and never quoted
            parts.append(f"{key}={value}")
            continue
        if kind is dict:
            if value:
                parts.append(plain_fields({f"{key}.{k}": v for k, v in value.items()}))
            continue
        if kind is list or kind is tuple:
            if not value:
                continue
            text = ",".join(map(str, value))
        else:
            text = _number(value) if kind is float else str(value)
        if not text or _QUOTE.search(text):
            text = json.dumps(text, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)


_QUOTE = re.compile(r'[\s="\\]')


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.6g}"


class RedactingFormatter(logging.Formatter):
    """The plain format: formats as usual, appends the record's fields, replaces every secret."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self.secrets = redaction_order(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            head, sep, tail = line.partition("\n")  # fields stay on the first line
            line = f"{head} {plain_fields(fields)}{sep}{tail}"
        return _replace(line, self.secrets)


class JsonFormatter(logging.Formatter):
    """The JSON format: one object per line with ts, level, logger, msg, the record's fields and,
    for errors, the traceback as `exc`; secrets replaced in the serialized line."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # A secret with a quote or a backslash looks different once JSON-escaped: redact both.
        self.secrets = redaction_order(f for s in secrets for f in (s, json.dumps(s)[1:-1]))

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return _replace(json.dumps(entry, ensure_ascii=False, default=str), self.secrets)


def make_formatter(
    log_format: Literal["plain", "json"], secrets: Iterable[str]
) -> logging.Formatter:
    """The formatter for bot.log_format; both redact secrets."""
    if log_format == "json":
        return JsonFormatter(secrets)
    return RedactingFormatter(PLAIN, secrets)


def setup_logging(
    level: str, secrets: Iterable[str], log_format: Literal["plain", "json"] = "plain"
) -> None:
    """Log to stderr at `level` in `log_format`, secrets redacted, chatty HTTP loggers held at
    WARNING."""
    handler = logging.StreamHandler()
    handler.setFormatter(make_formatter(log_format, secrets))
    handler.addFilter(NoUserText())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
