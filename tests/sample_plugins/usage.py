"""A plugin that records what each turn metered (`turn.usage`), for tests of metering plugins."""

from __future__ import annotations

from botcore import Reply, Turn, hookimpl

seen: list[dict[str, float]] = []
"""turn.usage of every turn that ended with a reply, in order."""


@hookimpl(trylast=True)
def post_message(turn: Turn, reply: Reply) -> None:
    seen.append(dict(turn.usage))
