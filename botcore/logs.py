"""Logging set-up: plain key=value lines or one JSON object per line, secrets kept out of both.

A record may carry structured fields (`log.info("update", extra={"fields": {...}})`): the plain
format appends them as key=value, the JSON format puts them at the top level of the object.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

QUIET = ("httpx", "httpx2", "httpcore", "openai", "telegram.ext.Updater", "aiohttp.access")
"""Loggers that print request URLs (the bot token is in them) or per-request noise."""

PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (6 characters or longer) replaced by "***"."""
    for secret in sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def plain_fields(fields: Mapping[str, Any]) -> str:
    """{"chat": 42, "outcome": "answered"} -> 'chat=42 outcome=answered'. None and empty values
    are left out, a mapping becomes key.sub=value, a list is comma-joined; values with spaces,
    quotes or '=' are JSON-quoted, so a line always splits back into its pairs."""
    parts = []
    for key, value in fields.items():
        if value is None or (isinstance(value, Mapping | list | tuple) and not value):
            continue
        if isinstance(value, Mapping):
            parts.append(plain_fields({f"{key}.{k}": v for k, v in value.items()}))
            continue
        if isinstance(value, list | tuple):
            value = ",".join(map(str, value))
        text = _number(value) if isinstance(value, float) else str(value)
        if not text or any(c in text for c in ' ="\n\\'):
            text = json.dumps(text, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.6g}"


class RedactingFormatter(logging.Formatter):
    """The plain format: formats as usual, appends the record's fields, replaces every secret."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            head, sep, tail = line.partition("\n")  # fields stay on the first line
            line = f"{head} {plain_fields(fields)}{sep}{tail}"
        return redact(line, self.secrets)


class JsonFormatter(logging.Formatter):
    """The JSON format: one object per line with ts, level, logger, msg, the record's fields and,
    for errors, the traceback as `exc`; secrets replaced in the serialized line."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # A secret with a quote or a backslash looks different once JSON-escaped: redact both.
        self.secrets = [form for s in secrets for form in {s, json.dumps(s)[1:-1]}]

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
        return redact(json.dumps(entry, ensure_ascii=False, default=str), self.secrets)


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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
