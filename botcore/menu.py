"""Telegram's command menu: the visible commands, per language, and the admins' own menus."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from telegram import BotCommand, BotCommandScopeChat
from telegram.error import TelegramError

if TYPE_CHECKING:
    from botcore.runtime import Runtime

log = logging.getLogger(__name__)


async def publish_menu(app: Runtime) -> None:
    """Fill Telegram's command menu, once per language the bot speaks: at start-up, and again
    when a plugin is switched on or off (`app.override`)."""
    bot = app.telegram
    commands = app.visible_commands()[:100]
    default = app.config.bot.language

    async def register(language: str | None) -> None:
        menu = [
            BotCommand(c.name, (c.help_for(language or default, default) or c.name)[:256])
            for c in commands
        ]
        try:
            await bot.set_my_commands(menu, language_code=language)
        except TelegramError as exc:
            log.warning("setMyCommands failed (%s): %s", language or "default", exc)

    await asyncio.gather(*(register(lang) for lang in [None, *app.texts.languages]))
    admin_commands = app.visible_commands(admin=True)[:100]
    if len(admin_commands) == len(commands):
        return
    menu = [BotCommand(c.name, (c.help_for(default) or c.name)[:256]) for c in admin_commands]
    for admin in app.config.bot.admins:  # each admin's private chat shows theirs too
        try:
            await bot.set_my_commands(menu, scope=BotCommandScopeChat(admin))
        except TelegramError as exc:  # "chat not found" until the admin writes to the bot
            log.info("setMyCommands for admin %s failed: %s", admin, exc)
