"""The permission gate in front of every tool (a plugin's function or a ToolSource's, MCP's):
who may cause it to run, in which chats, how often, whether the user approves each call first;
and the audit record of every call.

The policy is bot.toml's `[tools]` table (`ToolsSettings`). A tool a user may not use is left out
of the definitions offered for that user's turn and refused again if the model calls it anyway:
the model reads why, the turn goes on. Rate counters and approvals live in the store, so every
instance sharing it agrees. An approval is asked with two inline buttons (botcore.buttons: the
store keeps what they mean, Telegram sees a random token; only the user who caused the call may
press, once); the turn waits for the press, which is never queued behind it (the pipeline
answers presses outside the chat's lock). The audit keeps who, where, which tool, a digest of the
arguments (never the arguments: they may hold secrets), the outcome and the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from botcore.config import ConfigError, StrictModel, did_you_mean, validate
from botcore.plugins import CORE
from botcore.types import Button, Text

if TYPE_CHECKING:
    from botcore.store import Store
    from botcore.tools import ToolResult
    from botcore.turn import Turn

log = logging.getLogger(__name__)

ChatType = Literal["private", "group", "supergroup"]
CHAT_TYPES: tuple[ChatType, ...] = ("private", "group", "supergroup")
PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*$")
_KEY = re.compile(r"^[a-zA-Z0-9_*?\[\]!-]{1,64}$")
"""A policy key: a tool name, or a pattern of them (`*`, `?`, `[...]`: fnmatch)."""

AUDIT, CALLS = "gate.audit", "calls"
"""The store list that holds the audit (append-only, the newest `audit_keep` kept)."""
RATE = "gate.rate"
"""Store counters: calls of a tool by a user in the current window (they expire with it)."""
CLAIMED = "gate.claimed"
"""Store counters (limit 1): an approval's decision was taken, by a press or by its expiry."""
DECIDED = "gate.decided"
"""Store counters: an approval's decision (APPROVED or DENIED), for a waiter on another instance."""
APPROVED, DENIED, STOPPED = 1.0, 2.0, 3.0
PRESS = "gate:"
"""The prefix of an approval button's data (kept in the store by botcore.buttons)."""
POLL_EVERY = 1.0
"""Seconds between readings of the store for a decision taken on another instance (shared stores)."""
ARGS_SHOWN = 300
"""Characters of a call's arguments shown in an approval request, at most."""
_SECRETISH = re.compile(r"pass|secret|token|key|auth|cookie|credential", re.I)


class ToolPolicy(StrictModel):
    """`[tools.default]` or `[tools.policy."<tool or pattern>"]`: what a tool's callers may do.
    A key a table leaves out comes from the next less specific table that matches the tool."""

    who: Literal["everyone", "admins", "nobody"] | list[int] = "everyone"
    """Whose turns may cause the tool to run: everyone, bot.admins, nobody, or these user ids
    (bot.admins always may, except with "nobody")."""
    chats: list[ChatType] = Field(default_factory=lambda: list(CHAT_TYPES))
    """The chat types it may run in."""
    rate: str | None = None
    """At most this many calls per user, e.g. "10/hour" (second, minute, hour, day); unset: no limit."""
    confirm: bool = False
    """Ask the user to approve each call with a button before it runs."""
    confirm_timeout: float = Field(300.0, gt=0, le=86_400)
    """Seconds an approval waits for the press; then the model is told it was not approved."""

    @field_validator("rate")
    @classmethod
    def _rate_shape(cls, value: str | None) -> str | None:
        if value is not None:
            match = _RATE.match(value)
            if match is None or int(match.group(1)) < 1:
                raise ValueError('must look like "10/minute" (per second, minute, hour or day)')
        return value

    @field_validator("chats")
    @classmethod
    def _some_chats(cls, value: list[ChatType]) -> list[ChatType]:
        if not value:
            raise ValueError('is empty; to offer a tool to nobody, set who = "nobody"')
        return value

    @property
    def limit(self) -> tuple[int, int] | None:
        """(calls, seconds) of `rate`, or None."""
        match = _RATE.match(self.rate) if self.rate else None
        return (int(match.group(1)), PERIODS[match.group(2)]) if match else None


class ToolsSettings(StrictModel):
    """[tools]: the permission gate of the chat model's tools, and the audit of their calls."""

    default: ToolPolicy = Field(default_factory=ToolPolicy)
    """Every tool's policy, unless a table under `policy` says otherwise."""
    policy: dict[str, ToolPolicy] = Field(default_factory=dict)
    """By tool name, or by pattern ("files_*": all of an MCP server's tools); an exact name wins
    over a pattern, a longer pattern over a shorter one, each over `default`, key by key."""
    audit_keep: int = Field(1000, ge=10, le=1_000_000)
    """Tool calls kept for /audit (the oldest go first)."""

    @field_validator("policy")
    @classmethod
    def _keys(cls, value: dict[str, ToolPolicy]) -> dict[str, ToolPolicy]:
        for key in value:
            if not _KEY.match(key):
                raise ValueError(
                    f"{key!r}: a tool name or a pattern of them (a-z, A-Z, 0-9, _, -, *, ?)"
                )
        return value


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    """One tool call as the audit keeps it (App.tool_calls)."""

    at: float
    """Unix time the call was asked for."""
    user: int | None
    chat: int
    tool: str
    digest: str
    """The first 16 hex digits of the SHA-256 of the arguments as the model sent them."""
    outcome: str
    """ok, error, refused:<who|chat_type|rate>, cancelled, denied, expired or anonymous (an
    approval a message sent on behalf of a chat cannot give)."""


def digest(arguments: str) -> str:
    """A short fingerprint of a call's arguments: equal calls match, the values stay unknown."""
    return hashlib.sha256(arguments.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def render_arguments(arguments: str, limit: int = ARGS_SHOWN) -> str:
    """A call's arguments for a person to approve: `key: value` lines, values cut short, control
    characters dropped, and values under secret-looking keys hidden."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        parsed = arguments
    lines: list[str] = []
    items = parsed.items() if isinstance(parsed, dict) else [("", parsed)]
    for key, value in items:
        shown = "•••" if key and _SECRETISH.search(str(key)) else _short(_masked(value))
        lines.append(f"{_plain(str(key))[:40]}: {shown}" if key else shown)
    text = "\n".join(lines) or "—"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _masked(value: Any) -> Any:
    """`value` with what secret-looking keys hold hidden at any depth: a nested one (a
    config's token) would otherwise be shown to everyone in the chat."""
    if isinstance(value, dict):
        return {k: "•••" if _SECRETISH.search(str(k)) else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = _plain(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)


class Gate:
    """Applies `ToolsSettings` to tool calls: offers, refusals, rate limits, approvals, audit."""

    def __init__(self, settings: ToolsSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._policies: dict[str, ToolPolicy] = {}
        self._open = not settings.policy and _is_open(settings.default)
        """No tool is kept from anyone: the offer is the definitions as they are."""
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self._stopping = False

    @classmethod
    def from_config(
        cls,
        raw: dict[str, Any],
        store: Store,
        known: Collection[str],
        sources: bool,
    ) -> Gate:
        """The gate bot.toml's `[tools]` table describes. A policy that names no tool is a
        ConfigError, or a warning while tool sources (MCP) may bring it once they connect."""
        settings = validate(ToolsSettings, raw, prefix=("tools",))
        for key in settings.policy:
            if any(fnmatch.fnmatchcase(name, key) for name in known):
                continue
            hint = did_you_mean(key, sorted(known))
            if not sources:
                raise ConfigError(f'tools.policy."{key}": no such tool{hint}')
            log.warning(
                'tools.policy."%s": no tool of that name yet%s; it applies if a tool source '
                "(MCP: <server>_<tool>) offers one",
                key,
                hint,
            )
        return cls(settings, store)

    def policy(self, name: str) -> ToolPolicy:
        """The policy of tool `name`: its tables merged key by key, most specific first."""
        found = self._policies.get(name)
        if found is None:
            tables = [t for k, t in self.settings.policy.items() if k == name]
            tables += [
                table
                for key, table in sorted(self.settings.policy.items(), key=_specificity)
                if key != name and fnmatch.fnmatchcase(name, key)
            ]
            tables.append(self.settings.default)
            merged: dict[str, Any] = {}
            for field in ToolPolicy.model_fields:
                for table in tables:
                    if field in table.model_fields_set:
                        merged[field] = getattr(table, field)
                        break
                else:
                    merged[field] = getattr(self.settings.default, field)
            found = self._policies[name] = ToolPolicy.model_validate(merged)
            if len(self._policies) > 10_000:  # tool sources may rename tools without end
                self._policies.clear()
        return found

    def refusal(self, turn: Turn, name: str) -> str | None:
        """Why `turn`'s sender may not use tool `name` here ("who", "chat_type"), or None."""
        policy = self.policy(name)
        if turn.chat_type not in policy.chats:
            return "chat_type"
        who = policy.who
        if who == "everyone":
            return None
        if who == "nobody":
            return "who"
        if turn.is_admin or (isinstance(who, list) and turn.sender_id in who):
            return None
        return "who"

    def offer(self, turn: Turn, definitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The definitions `turn`'s sender may use (the same list when nobody is kept out)."""
        if self._open:
            return definitions
        return [d for d in definitions if self.refusal(turn, d["function"]["name"]) is None]

    async def call(
        self, turn: Turn, name: str, arguments: str, run: Callable[[], Awaitable[ToolResult]]
    ) -> ToolResult:
        """Run a tool call through the gate (`run` runs it) and record it; a refusal, a denial
        or an expired approval is a result for the model, never an exception."""
        from botcore.tools import ToolResult

        asked = time.time()
        result: ToolResult | None = None
        outcome = "error"
        try:
            why = self.refusal(turn, name)
            policy = self.policy(name)
            if why is not None:
                outcome, result = f"refused:{why}", ToolResult(_refused(turn, name, why), ok=False)
            elif (wait := await self._over_rate(turn, name, policy)) is not None:
                outcome = "refused:rate"
                result = ToolResult(
                    f"Error: {name} was refused: this user may call it at most {policy.rate}; "
                    f"it can be called again in {wait} s. Tell the user.",
                    ok=False,
                )
            elif policy.confirm and (decision := await self._approval(turn, name, arguments)):
                outcome = decision
                result = ToolResult(f"Error: {name} did not run: {_UNAPPROVED[decision]}", ok=False)
            else:
                result = await run()  # never raises: a tool's failure is a result
                outcome = "ok" if result.ok else "error"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"  # the user stopped the answer (/cancel) or the bot stops
            raise
        except Exception as exc:  # the store failed a rate count or an approval: no run
            log.warning("tool %s: the gate cannot decide: %s", name, type(exc).__name__)
            return ToolResult(
                f"Error: {name} cannot run right now (the bot's store is unavailable); "
                "try again later.",
                ok=False,
            )
        finally:
            await self._record(turn, name, arguments, outcome, asked)

    async def _over_rate(self, turn: Turn, name: str, policy: ToolPolicy) -> int | None:
        """Count this call against the user's rate; the seconds until the next is allowed, or
        None if this one is. A fixed window: at most `calls` in each `seconds` (by the clock)."""
        limit = policy.limit
        if limit is None:
            return None
        calls, seconds = limit
        now = time.time()
        window = int(now // seconds)
        who = turn.sender_id if turn.sender_id is not None else turn.chat_id
        key = f"{name}:{who}:{window}"
        if await self.store.add(RATE, key, 1, limit=calls, ttl=seconds) is not None:
            return None
        return max(1, int((window + 1) * seconds - now + 0.999))

    async def _approval(self, turn: Turn, name: str, arguments: str) -> str | None:
        """Ask the user to approve the call and wait: None if approved, else why not ("denied",
        "expired", "anonymous", ...). Only the sender may press (botcore.buttons), once."""
        policy = self.policy(name)
        if self._stopping:
            return "cancelled"
        if turn.message.sender_chat is not None:
            # Sent on behalf of a chat (a channel, an anonymous admin): the keyboard would be kept
            # for that chat, a press always comes from a person, so nobody could ever approve
            # and the turn would wait out the timeout for nothing.
            await turn.send(turn.t("tool_anonymous", tool=name))
            return "anonymous"
        ask = secrets.token_urlsafe(9)
        future = self._waiting[ask] = asyncio.get_running_loop().create_future()
        try:
            try:
                await turn.send(
                    Text(
                        turn.t("tool_confirm", tool=name, arguments=render_arguments(arguments)),
                        buttons=[
                            [
                                Button(turn.t("tool_approve"), f"{PRESS}{ask}:y:{name}"),
                                Button(turn.t("tool_deny"), f"{PRESS}{ask}:n:{name}"),
                            ]
                        ],
                        plugin=CORE,
                    )
                )
            except Exception as exc:  # Telegram refused the question: nobody can approve
                log.warning("tool %s: cannot ask for approval: %s", name, type(exc).__name__)
                return "error"
            async with turn.waiting_for_user():  # no "typing…" while the user decides
                decision = await self._decision(ask, future, policy.confirm_timeout)
        finally:
            self._waiting.pop(ask, None)
        if decision == APPROVED:
            return None
        if decision == DENIED:
            return "denied"
        if decision == STOPPED:
            return "cancelled"
        await turn.send(turn.t("tool_expired", tool=name))
        return "expired"

    async def _decision(self, ask: str, future: asyncio.Future[float], seconds: float) -> float:
        """Wait for the press (here, or on another instance with a shared store) until
        `seconds`; then claim the expiry, unless a press claimed the decision first."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            step = min(left, POLL_EVERY) if self.store.shared else left
            with contextlib.suppress(TimeoutError):
                heard = await asyncio.wait_for(asyncio.shield(future), step)
                if heard == STOPPED:  # no press may decide it any more, on any instance
                    with contextlib.suppress(Exception):
                        await self.store.add(CLAIMED, ask, 1, limit=1, ttl=seconds + 3600)
                return heard
            if self.store.shared and (found := await self._decided(ask)) is not None:
                return found
        if await self.store.add(CLAIMED, ask, 1, limit=1, ttl=seconds + 3600) is not None:
            return 0.0  # expired: no press can decide any more
        for _ in range(10):  # a press won the claim just now: its decision is on its way
            if future.done():
                return future.result()
            if (found := await self._decided(ask)) is not None:
                return found
            await asyncio.sleep(0.1)
        return 0.0

    def stop_waiting(self) -> None:
        """The bot stops: the approvals still open end now (their models are told), so that a
        shutdown never waits minutes for a press."""
        self._stopping = True
        for future in self._waiting.values():
            if not future.done():
                future.set_result(STOPPED)

    async def _decided(self, ask: str) -> float | None:
        value = (await self.store.totals(DECIDED, ask)).get(ask)
        return value if value in (APPROVED, DENIED) else None

    async def pressed(self, turn: Turn, data: str) -> Text:
        """An approval button was pressed (by the user it was sent to: botcore.buttons checked):
        decide, if the request is still open, and say what came of it."""
        ask, _, rest = data.removeprefix(PRESS).partition(":")
        answer, _, name = rest.partition(":")
        waiting = self._waiting.get(ask)
        if not self.store.shared and (waiting is None or waiting.done()):
            return Text(turn.t("tool_too_late", tool=name))  # its turn is over (a restart)
        if await self.store.add(CLAIMED, ask, 1, limit=1, ttl=86_400) is None:
            return Text(turn.t("tool_too_late", tool=name))
        decision = APPROVED if answer == "y" else DENIED
        if waiting is not None and not waiting.done():
            waiting.set_result(decision)
        if self.store.shared:  # the turn that waits may run on another instance
            await self.store.add(DECIDED, ask, decision, ttl=86_400)
        log.info("tool %s: user %s %s the call", name, turn.sender_id, _word(decision))
        return Text(turn.t("tool_approved" if decision == APPROVED else "tool_denied", tool=name))

    async def _record(self, turn: Turn, name: str, arguments: str, outcome: str, at: float) -> None:
        entry = {
            "at": at,
            "user": turn.sender_id,
            "chat": turn.chat_id,
            "tool": name,
            "digest": digest(arguments),
            "outcome": outcome,
        }
        try:
            await self.store.list_push(AUDIT, CALLS, [entry], keep=self.settings.audit_keep)
        except Exception as exc:  # the store is down: the call happened; the log says so
            log.warning(
                "audit: cannot record a call of %s (%s) by %s: %s",
                name,
                outcome,
                turn.sender_id,
                type(exc).__name__,
            )

    async def recent(self, limit: int) -> list[AuditEntry]:
        """The newest `limit` recorded calls, newest first."""
        rows = await self.store.list_read(AUDIT, CALLS, limit=limit)
        found = []
        for row in reversed(rows):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                found.append(
                    AuditEntry(
                        float(row["at"]),
                        None if row.get("user") is None else int(row["user"]),
                        int(row["chat"]),
                        str(row["tool"]),
                        str(row["digest"]),
                        str(row["outcome"]),
                    )
                )
        return found


_UNAPPROVED = {
    "denied": "the user denied it.",
    "expired": "the user did not approve it in time.",
    "error": "the user could not be asked to approve it.",
    "cancelled": "the bot is restarting; the user may ask again in a moment.",
    "anonymous": "it needs the user's approval, which a message sent on behalf of a chat (a "
    "channel, an anonymous admin) cannot give; the user was told to write as themselves.",
}


def _specificity(item: tuple[str, ToolPolicy]) -> int:
    """Patterns with more literal characters sort first (they say more about a tool)."""
    key = item[0]
    return -(len(key) - sum(key.count(c) for c in "*?[]!"))


def _is_open(policy: ToolPolicy) -> bool:
    return policy.who == "everyone" and set(policy.chats) >= set(CHAT_TYPES)


def _word(decision: float) -> str:
    return "approved" if decision == APPROVED else "denied"


def _refused(turn: Turn, name: str, why: str) -> str:
    if why == "chat_type":
        where = "private chats" if turn.is_private else f"{turn.chat_type} chats"
        return f"Error: {name} may not be used in {where}; it did not run. Tell the user."
    return (
        f"Error: this user is not allowed to use {name}; it did not run. Do not try again; "
        "tell the user it is not available to them."
    )


def names_of(definitions: Sequence[dict[str, Any]]) -> list[str]:
    """The tool names of a `tools` list."""
    return [d["function"]["name"] for d in definitions]
