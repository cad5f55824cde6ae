"""access: who may use the bot (everyone, or allow-lists of users and chats), and /allow, /deny.

List it first in `[bot] plugins` (its `pre_message` is `tryfirst` anyway): a refused message goes
no further, so no other plugin, and no model, ever sees it. A refused user is told so once, then
again at most every `remind_hours`: answering every message would let anyone make the bot spam.
Changes made with /allow and /deny are settings overrides (`app.override`): computed from what
is stored (not from this process's copy), kept in the store, applied at once by every instance
that shares it and at every start, shown by `botcore config`.

The sender is `turn.sender_id`: a user, or the chat a message is sent on behalf of. A channel
posting in a group is a sender of its own (allow or block its id, -100…), since Telegram gives all
channels one placeholder user. An anonymous group admin speaks for the group itself, as Telegram
says: who they are is not known, so they are allowed or blocked with the group. An edit of a
message passes through here too (as any message does), so a refused user is not answered by
editing either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from pydantic import Field

from botcore import App, Command, StrictModel, Turn, UserError, hookimpl

log = logging.getLogger(__name__)
TOLD = "access.told"
"""Store records: user id -> when they were last told they may not use the bot."""


class Settings(StrictModel):
    """[plugins.access]"""

    open: bool = True
    """Everyone may use the bot; false: only admins, `users`, and anyone in `chats`."""
    users: list[int] = Field(default_factory=list)
    """User ids allowed when the bot is not open."""
    chats: list[int] = Field(default_factory=list)
    """Group ids (negative) where every member may use the bot when it is not open, and
    channels that may post to it (in any group)."""
    blocked: list[int] = Field(default_factory=list)
    """User, group or channel ids refused even when the bot is open (admins never are)."""
    remind_hours: float = Field(24, ge=0)
    """A refused user is told again after this many hours (0: only once)."""


@hookimpl
def settings_model() -> type[Settings]:
    return Settings


@hookimpl
def register_texts() -> dict[str, dict[str, str]]:
    return {
        "en": {
            "access.refused": "Sorry, this bot is private. Ask its owner for access "
            "and give them your id: {user_id}.",
            "access.blocked": "Sorry, you may not use this bot.",
            "access.allow": "Allow a user (id, or reply to their message) or this group",
            "access.deny": "Block a user (id, or reply to their message) or this group",
            "access.usage": "Give an id: /{command} 123456789 (a user) or -100123 (a group), "
            "or reply to the person's message with /{command}.",
            "access.allowed": "{who} may use the bot now.",
            "access.denied": "{who} may no longer use the bot.",
            "access.user": "User {id}",
            "access.chat": "Chat {id}",
            "access.admin": "{id} is an admin (bot.admins in bot.toml) and cannot be blocked.",
        },
        "ru": {
            "access.refused": "Извините, это закрытый бот. Попросите доступ у владельца "
            "и сообщите ему ваш id: {user_id}.",
            "access.blocked": "Извините, вам нельзя пользоваться этим ботом.",
            "access.allow": "Разрешить пользователя (id или ответом на его сообщение) или эту группу",
            "access.deny": "Запретить пользователя (id или ответом на его сообщение) или эту группу",
            "access.usage": "Укажите id: /{command} 123456789 (пользователь) или -100123 "
            "(группа), или ответьте командой /{command} на сообщение человека.",
            "access.allowed": "{who}: доступ к боту открыт.",
            "access.denied": "{who}: доступ к боту закрыт.",
            "access.user": "Пользователь {id}",
            "access.chat": "Чат {id}",
            "access.admin": "{id} — администратор (bot.admins в bot.toml), его нельзя запретить.",
        },
    }


@hookimpl
def register_commands(app: App) -> Sequence[Command]:
    return [
        Command("allow", allow, help=app.translations("access.allow"), admin=True),
        Command("deny", deny, help=app.translations("access.deny"), admin=True),
    ]


def allowed(settings: Settings, admin: bool, sender: int | None, chat_id: int) -> bool:
    """May this sender (a user, or a chat speaking for itself), in this chat, use the bot?"""
    if admin:
        return True
    if sender in settings.blocked or chat_id in settings.blocked:
        return False
    return (
        settings.open
        or sender in settings.users
        or sender in settings.chats
        or chat_id in settings.chats
    )


@hookimpl(tryfirst=True)
async def pre_message(turn: Turn) -> str | None:
    settings = turn.app.settings(Settings)
    sender = turn.sender_id
    if allowed(settings, turn.is_admin, sender, turn.chat_id):
        return None
    turn.ignored = True
    if not turn.addressed or sender is None:
        return None  # group chatter not meant for the bot: no reason to speak up
    store = turn.app.store
    told = await store.get(TOLD, str(sender))
    now = time.time()
    if told is not None and (
        not settings.remind_hours or now - told < settings.remind_hours * 3600
    ):
        return None
    await store.put(TOLD, str(sender), now)
    log.info("refused sender %s in chat %s (not allowed)", sender, turn.chat_id)
    if sender in settings.blocked or turn.chat_id in settings.blocked:
        return turn.t("access.blocked")
    return turn.t("access.refused", user_id=sender)


def _target(turn: Turn) -> int:
    """The id a command is about: its argument, the sender of the replied-to message (a channel
    that posted it; the group, for an anonymous admin's), or the group it is sent in."""
    arg = turn.args.split()[0] if turn.args.split() else ""
    if arg:
        try:
            return int(arg)
        except ValueError:
            pass
    else:
        reply = turn.message.reply_to_message
        if reply is not None and reply.sender_chat is not None:
            return reply.sender_chat.id  # its `from` is a placeholder all such senders share
        if reply is not None and reply.from_user is not None and not reply.from_user.is_bot:
            return reply.from_user.id
        if not turn.is_private:
            return turn.chat_id
    raise UserError(turn.t("access.usage", command=turn.command))


def _list(target: int) -> str:
    """The allow-list setting an id belongs in: users (positive ids) or chats (negative)."""
    return "plugins.access.users" if target > 0 else "plugins.access.chats"


def _who(turn: Turn, target: int) -> str:
    return turn.t("access.user" if target > 0 else "access.chat", id=target)


def _change(target: int, *, present: bool) -> Callable[[list[int] | None], list[int] | None]:
    """The change that adds `target` to a list (or drops it), as `app.override` applies it to
    the stored value (else bot.toml's): a list that already says so is left alone, so bot.toml's
    value stays in charge of it."""

    def change(ids: list[int] | None) -> list[int] | None:
        if (target in (ids or [])) == present:
            return ids
        rest = [i for i in ids or [] if i != target]
        return sorted([*rest, target]) if present else rest

    return change


async def allow(turn: Turn) -> str:
    """/allow <id>: let a user (positive id) or a group (negative id) use the bot."""
    target = _target(turn)
    app = turn.app
    await app.override_many(  # one change: no other /deny or /allow comes between the two
        {
            "plugins.access.blocked": _change(target, present=False),
            _list(target): _change(target, present=True),
        }
    )
    await app.store.put(TOLD, str(target), None)
    log.info("admin %s allowed %s", turn.user_id, target)
    return turn.t("access.allowed", who=_who(turn, target))


async def deny(turn: Turn) -> str:
    """/deny <id>: block a user or a group, even when the bot is open to all."""
    target = _target(turn)
    app = turn.app
    if target in app.admins:
        raise UserError(turn.t("access.admin", id=target))
    await app.override_many(
        {
            _list(target): _change(target, present=False),
            "plugins.access.blocked": _change(target, present=True),
        }
    )
    log.info("admin %s blocked %s", turn.user_id, target)
    return turn.t("access.denied", who=_who(turn, target))
