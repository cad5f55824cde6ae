"""The built-in welcome: /start and /help list every command of every enabled plugin."""

from __future__ import annotations

from collections.abc import Sequence

from botcore import App, Command, Turn, hookimpl


@hookimpl
def register_texts() -> dict[str, dict[str, str]]:
    return {
        "en": {
            "welcome.start": "Start the bot",
            "welcome.help": "List the commands",
        },
        "ru": {
            "welcome.start": "Запустить бота",
            "welcome.help": "Список команд",
        },
    }


@hookimpl
def register_commands(app: App) -> Sequence[Command]:
    return [
        Command("start", welcome, help=app.translations("welcome.start")),
        Command("help", welcome, help=app.translations("welcome.help")),
    ]


async def welcome(turn: Turn) -> str:
    """Greet the user in their language and list the commands."""
    commands = turn.app.commands(admin=turn.is_admin)
    default = turn.app.language
    lines = [turn.t("welcome"), ""]
    lines += [f"/{c.name} — {c.help_for(turn.language, default) or c.name}" for c in commands]
    return "\n".join(lines)
