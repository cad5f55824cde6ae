"""The example plugin, installed from examples/, answers end to end through the testing kit."""

import re

import pytest

from botcore import ConfigError
from botcore.testing.fake_telegram import FakeTelegram


async def test_roll(start_bot, telegram: FakeTelegram) -> None:
    await start_bot(["dice"], settings={"dice": {"max_dice": 3}})
    reply = await telegram.reply_to("/roll 2d6")
    match = re.fullmatch(r"🎲 (\d) \+ (\d) = (\d+)", reply.text or "")
    assert match, reply.text
    a, b, total = map(int, match.groups())
    assert 1 <= a <= 6 and 1 <= b <= 6 and a + b == total


async def test_bad_roll_gets_usage_from_its_settings(start_bot, telegram: FakeTelegram) -> None:
    await start_bot(["dice"], settings={"dice": {"max_dice": 3}})
    reply = await telegram.reply_to("/roll 9d6")
    assert reply.text == "Usage: /roll 2d6 (at most 3 dice)"


async def test_listed_in_help_and_menu(start_bot, telegram: FakeTelegram) -> None:
    await start_bot(["dice"])
    reply = await telegram.reply_to("/help")
    assert "/roll — Roll dice: /roll 2d6" in (reply.text or "")
    menu = telegram.commands[("default", None)]
    assert {"command": "roll", "description": "Roll dice: /roll 2d6"} in menu


async def test_a_misspelt_setting_stops_start_up(start_bot) -> None:
    with pytest.raises(ConfigError) as info:
        await start_bot(["dice"], settings={"dice": {"max_dise": 5}})
    assert str(info.value) == "plugins.dice.max_dise: unknown key (did you mean 'max_dice'?)"
