"""A budget of one: the smallest reserve_usage and turn_end, and a command that spends, or fails."""

from __future__ import annotations

from collections.abc import Mapping

from botcore import Command, Turn, UserError, hookimpl

ENDED: list[tuple[int | None, dict[str, float]]] = []
"""(user, turn.usage) of every turn that ended, in order."""
_spent: set[int | None] = set()


@hookimpl
def register_commands() -> list[Command]:
    return [Command("spend", spend), Command("waste", waste)]


async def spend(turn: Turn) -> str:
    await turn.reserve({"quota.calls": 1})
    turn.meter("quota.calls", 1)
    return "spent"


async def waste(turn: Turn) -> str:
    turn.meter("quota.calls", 0.5)
    raise RuntimeError("the call failed after it used something")


@hookimpl
def reserve_usage(turn: Turn, items: Mapping[str, float]) -> None:
    if items.get("quota.calls") and turn.user_id in _spent:
        raise UserError("Your one call is spent.")
    _spent.add(turn.user_id)


@hookimpl
async def turn_end(turn: Turn) -> None:
    ENDED.append((turn.user_id, dict(turn.usage)))
