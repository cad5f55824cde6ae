"""gatekeeper: only listed users get through; photos get an answer; every reply gets a signature."""

from __future__ import annotations

from pydantic import Field

import botcore


class Settings(botcore.StrictModel):
    allowed_users: list[int] = Field(default_factory=list)
    """Telegram user ids let in; empty lets everyone in."""
    signature: str = ""
    """Appended to every text reply."""


@botcore.hookimpl
def settings_model() -> type[Settings]:
    return Settings


@botcore.hookimpl
def pre_message(turn: botcore.Turn) -> str | None:
    allowed = turn.app.settings(Settings).allowed_users
    if allowed and turn.user_id not in allowed:
        return "Sorry, this bot is private."  # answers at once: nothing else runs
    if turn.text:
        turn.text = turn.text.strip()  # every plugin after this one sees the cleaned text
    return None


@botcore.hookimpl
def post_message(turn: botcore.Turn, reply: botcore.Reply) -> botcore.Reply | None:
    signature = turn.app.settings(Settings).signature
    if signature and isinstance(reply, botcore.Text):
        return botcore.Text(f"{reply.text}\n\n{signature}", markdown=reply.markdown)
    return None  # keep the reply as it is


@botcore.hookimpl
def register_handlers() -> list[botcore.Handler]:
    return [botcore.Handler({"photo"}, describe_photo)]


async def describe_photo(turn: botcore.Turn) -> str:
    photo = turn.message.photo[-1]  # the largest size
    data = await turn.download(photo.file_id, size=photo.file_size)
    return f"A {photo.width}×{photo.height} photo, {len(data)} bytes."
