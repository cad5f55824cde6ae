"""dice: /roll 2d6 rolls dice. A complete third-party botcore plugin."""

import random

import botcore


class Settings(botcore.StrictModel):
    max_dice: int = 20


@botcore.hookimpl
def settings_model() -> type[Settings]:
    return Settings


@botcore.hookimpl
def register_commands() -> list[botcore.Command]:
    return [botcore.Command("roll", roll, help="Roll dice: /roll 2d6")]


async def roll(turn: botcore.Turn) -> str:
    count, _, sides = (turn.args or "1d6").lower().partition("d")
    limit = turn.app.settings(Settings).max_dice
    if not (count.isdigit() and sides.isdigit() and 0 < int(count) <= limit and int(sides) > 0):
        raise botcore.UserError(f"Usage: /roll 2d6 (at most {limit} dice)")
    rolls = [random.randint(1, int(sides)) for _ in range(int(count))]
    return f"🎲 {' + '.join(map(str, rolls))} = {sum(rolls)}"
