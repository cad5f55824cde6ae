"""A metrics recorder of its own (a list of calls), as a third party would provide one."""

from __future__ import annotations

import botcore


class Tally(botcore.Metrics):
    """Keeps every count and observation it is given."""

    enabled = True

    def __init__(self) -> None:
        self.counts: list[tuple[str, float, dict[str, str]]] = []
        self.observed: list[tuple[str, dict[str, str]]] = []

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        self.counts.append((name, amount, labels))

    def observe(self, name: str, value: float, **labels: str) -> None:
        self.observed.append((name, labels))


@botcore.hookimpl
def register_commands() -> list[botcore.Command]:
    return [botcore.Command("tally", tally, help="Counts a visit in the bot's metrics")]


async def tally(turn: botcore.Turn) -> str:
    turn.app.metrics.count("visits", plugin="tally")
    return "counted"


@botcore.hookimpl
def metrics_recorder(app: botcore.App) -> botcore.Metrics:
    return Tally()
