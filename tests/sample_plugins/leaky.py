"""A plugin that tries to leak the secrets into the log, to prove the formatters redact them."""

from __future__ import annotations

import logging

from botcore import Command, Turn, hookimpl

log = logging.getLogger(__name__)


@hookimpl
def register_commands() -> list[Command]:
    return [Command("leak", leak, help="Logs the secrets (they must come out as ***)")]


async def leak(turn: Turn) -> str:
    config = turn.runtime.config
    api_key = config.openai.api_key.get_secret_value() if config.openai.api_key else ""
    log.warning("the API key is %s", api_key)
    raise RuntimeError(f"the token is {config.bot.token.get_secret_value()}")
