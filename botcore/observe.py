"""The end of every turn as the operator sees it: one structured log line and the metrics."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botcore.turn import Turn
    from botcore.types import Reply

log = logging.getLogger("botcore.updates")


def record_turn(turn: Turn, reply: Reply | None, *, kind: str, started: float) -> None:
    """Log the turn's line and count it; `kind` is the message's kind as received (before a
    pre_message hook rewrote it), `started` its time.perf_counter() at arrival."""
    seconds = time.perf_counter() - started
    result = turn.record.outcome(reply, kind)
    app = turn.runtime
    app.health.saw_update()
    metrics = app.metrics
    if metrics.enabled:
        metrics.count("updates", kind=kind, outcome=result)
        metrics.observe("turn_seconds", seconds, kind=kind)
        for plugin in turn.record.errors:
            metrics.count("plugin_errors", plugin=plugin)
        for item, amount in turn.usage.items():
            metrics.count("usage", amount, item=item)
    if log.isEnabledFor(logging.INFO):
        fields = {
            "update_id": turn.update_id,
            "chat_id": turn.chat_id,
            "user_id": turn.user_id,
            "kind": kind,
            "command": turn.command,
            "plugin": turn.replied_by,
            "outcome": result,
            "errors": turn.record.errors,
            "ms": round(seconds * 1000, 1),
            "usage": {k: int(v) if v.is_integer() else v for k, v in turn.usage.items()},
        }
        log.info("update", extra={"fields": fields})
