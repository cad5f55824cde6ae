"""The kit's harness as the plugin guide documents it: a bot from a Config or from its dict form."""

from __future__ import annotations

import pytest

from botcore.config import Config, ConfigError, validate
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness


async def test_start_config_takes_the_dict_form(
    bot_harness: BotHarness, telegram: FakeTelegram
) -> None:
    config = bot_harness.config_dict(bot={"language": "ru"})
    bot = await bot_harness.start_config(config)
    assert bot.app.language == "ru"
    assert (await telegram.reply_to("/help")).text
    await bot.stop()
    again = await bot_harness.start_config(validate(Config, config))  # or a ready Config
    assert again.app.language == "ru"
    assert bot_harness.running == [bot, again]


async def test_a_bad_dict_is_the_line_botcore_check_prints(bot_harness: BotHarness) -> None:
    config = bot_harness.config_dict()
    config["bot"]["pluggins"] = ["chat"]
    with pytest.raises(ConfigError) as info:
        await bot_harness.start_config(config)
    assert str(info.value) == "bot.pluggins: unknown key (did you mean 'plugins'?)"
    assert bot_harness.running == []
