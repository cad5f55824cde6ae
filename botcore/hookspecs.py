"""The whole plugin contract: every hook a botcore plugin may implement.

A plugin is a module with functions decorated `@botcore.hookimpl`, named after the hooks below.
Implement only the hooks you need, and take only the arguments you need (pluggy passes them by
name). Any hook may be `async def`; the core awaits it (the registration hooks, settings_model
history_store and metrics_recorder once, at start-up). Hook wrappers (`@hookimpl(wrapper=True)` or
`hookwrapper=True`) are not supported: the core calls each plugin on its own, to await and isolate
it, so one is a start-up error naming the plugin and the hook.

Order: hooks run in the order of `[bot] plugins` in bot.toml (`@hookimpl(tryfirst=True)` and
`trylast=True` move one to the front or the back).

Isolation: a hook that raises never stops the bot. The error is logged with the plugin's name and
the update id, the other plugins still run, and if the user is left without an answer they get the
friendly "could not process the request" message in their language. Raise `botcore.UserError("…")`
to show your own message instead (it is not logged as a bug). A misspelled hook name is a start-up
error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from pydantic import BaseModel
    from telegram import PreCheckoutQuery

    from botcore.app import App
    from botcore.metrics import Metrics
    from botcore.store import HistoryStore
    from botcore.tools import ToolSource
    from botcore.turn import Turn
    from botcore.types import Command, Handler, Reply

hookspec = pluggy.HookspecMarker("botcore")


@hookspec
def settings_model() -> type[BaseModel]:
    """The pydantic model of this plugin's `[plugins.<name>]` table in bot.toml.

    Validated at start-up; an unknown key or a wrong type stops start-up naming the dotted path.
    Read the values anywhere with `turn.app.settings(YourModel)`. No hook: the table must be absent.
    """


@hookspec
def register_commands(app: App) -> Sequence[Command]:
    """Slash commands this plugin answers; their help texts fill /help and Telegram's menu.

    Two plugins registering the same command name is a start-up error (a plugin may replace a
    built-in command such as /help). `app.translations(key)` gives a localized help mapping.
    """


@hookspec
def register_handlers() -> Sequence[Handler]:
    """Handlers for messages that are not commands (text, voice, photo...).

    For each turn, handlers whose kinds match run in plugin order until one returns a reply.
    """


@hookspec
def register_tools(app: App) -> Sequence[Callable[..., Any] | ToolSource]:
    """Functions the chat model may call (OpenAI tool calling), plain or `async def`.

    The tool's name is the function's name; its description is the docstring before `Args:`, and
    the JSON schema of its arguments comes from the type hints (anything pydantic can describe:
    str, int, float, bool, Literal, Enum, lists, dicts, models, `X | None`) with each argument's
    description from the docstring's `Args:` section (or `Annotated[T, Field(description=...)]`).
    All of it is checked at start-up: an argument without a type or a description, a type JSON
    cannot carry, `*args`, or a name another plugin's tool already has is a start-up error naming
    the plugin and the tool. A parameter `turn: Turn` is passed the current turn and is not shown
    to the model. The model's arguments are validated first; invalid ones never reach the function.

    Return a string (or anything JSON-serializable) for the model, or a Reply (Text, Photo, Voice,
    Document) that is sent to the user while the model is told it was delivered. Raise
    `UserError("…")` to tell the model what went wrong; any other exception, or running past the
    chat plugin's `tool_timeout`, is logged with the plugin's name and the model is told the tool
    failed; the turn goes on. A plain function runs in a worker thread, so it may block.

    Tools known only at run time (an MCP server's) come from a `botcore.ToolSource` in the list:
    its `definitions()` are asked for at every request (a bad entry or a taken name is logged and
    left out) and its `async call(turn, name, arguments)` runs under the same timeout, errors and
    circuit breaker as a function.
    """


@hookspec
def register_texts() -> Mapping[str, Mapping[str, str]]:
    """User-facing texts by language: {"en": {"weather.usage": "…"}, "ru": {…}}; see `turn.t(key)`.

    Prefix keys with your plugin's name. A key missing in a language falls back to the default
    language, then English. A package may instead ship `locales/<language>.toml` (loaded
    automatically); the operator's `bot.locales_dir` overrides both.
    """


@hookspec
async def startup(app: App) -> None:
    """Called once before the first update: open connections, warm caches.

    Raising here stops start-up with the plugin's name: a bot that cannot serve should not pretend.
    """


@hookspec
async def shutdown(app: App) -> None:
    """Called once on the way out, after the last update: close what `startup` opened.

    Errors are logged and the other plugins still shut down.
    """


@hookspec
async def pre_message(turn: Turn) -> Reply | str | None:
    """See every incoming message before it is routed; rewrite it or answer it.

    Change `turn.text` / `turn.kind` to rewrite (voice turns audio into text here), or return a
    reply to answer at once: the chain stops and no command or handler runs (access control).
    Set `turn.ignored = True` (and return None) to end the turn in silence. An edited message
    (private chats) and a /cancel answered at once pass through here too, so refusing them works
    the same; an edit comes as kind "other" (it only gets a hint that edits do not count).
    """


@hookspec
async def post_message(turn: Turn, reply: Reply) -> Reply | None:
    """See the reply before it is sent: return a new reply to replace it, or None to keep it.

    Runs for every reply that ends a turn (not for `turn.send()` notes sent along the way).
    """


@hookspec
async def button_pressed(turn: Turn, data: str) -> Reply | str | None:
    """A user pressed an inline button this plugin sent (`Text(..., buttons=[[Button(...)]])`):
    answer as a handler would. `data` is the pressed `Button`'s data; the turn is the presser's
    (kind "button"), in the chat and topic of the keyboard, after the pre_message hooks.

    Only the plugin that sent the keyboard is called, only for the user it was sent to (any
    member, when the message was sent on behalf of the group or a channel), once per keyboard
    (its first press spends it, on every instance) and within a day; a forged, replayed,
    expired or someone else's press is answered by botcore and reaches no plugin.
    """


@hookspec
async def pre_checkout(turn: Turn, query: PreCheckoutQuery) -> str | None:
    """A user is about to pay an `Invoice` (Telegram Stars): return None to let them, or the
    reason to refuse, which Telegram shows them (nothing is charged). Telegram waits 10 seconds:
    check quickly (is `query.invoice_payload` still for sale, to this user?).

    The turn is the payer's (kind "pre_checkout", in their private chat), after the pre_message
    hooks: one that answers or ignores it (access control) refuses the payment. The first refusal
    wins; with no plugin implementing this hook, or one that raises, the payment is refused.
    The payment itself then comes as a turn of kind "payment" (see `Invoice`), which skips the
    pre_message hooks (the user has paid) and is handled again if a kill cut its turn off:
    credit it once per `telegram_payment_charge_id`.
    """


@hookspec
async def reserve_usage(turn: Turn, items: Mapping[str, float]) -> None:
    """Called by `turn.reserve(items)` before an expensive call, with its estimated use.

    Raise `UserError` to refuse the call (over budget); the error reaches the plugin that asked,
    whose user sees the message. What is reserved is settled against `turn.usage` in `turn_end`.
    Unlike other hooks, any error here propagates: a budget that cannot be checked is not spent.
    """


@hookspec
async def turn_end(turn: Turn) -> None:
    """Called once a turn is over (its reply delivered, or the turn failed), with `turn.usage`
    complete: a streamed answer meters its tokens while it is delivered, after `post_message`.

    Runs for every plugin, even one switched off during the turn; errors are logged.
    """


@hookspec
async def settings_changed(app: App) -> None:
    """Called when settings changed in chat (`app.override`) were applied while the bot runs:
    made on this instance, or on another one sharing the store (within a second).

    `app.settings(...)` already returns the new values; bring in line whatever you derived from
    them (the admin plugin switches plugins on and off). Not called at start-up: read the
    settings in `startup` then. Errors are logged and the other plugins still run.
    """


@hookspec
async def chat_moved(app: App, old_chat_id: int, new_chat_id: int) -> None:
    """A group became a supergroup, which has a new chat id: move what you keep under the old id
    (the history plugin moves its conversations). Replies already go to the new id.

    Called once per instance that hears of it; errors are logged and the other plugins still run.
    """


@hookspec(firstresult=True)
def history_store(app: App) -> HistoryStore | None:
    """Provide the conversation store other plugins use as `app.history` (the history plugin).

    The first plugin to return a store wins; return None to leave it to others. Called once, after
    every plugin's `startup`.
    """


@hookspec(firstresult=True)
def metrics_recorder(app: App) -> Metrics | None:
    """Provide what records `app.metrics` calls: a `botcore.Metrics` subclass with `enabled` set
    (the metrics plugin's Prometheus registry). Without one, every call is a no-op.

    The first plugin to return one wins. Called once, after every plugin's `startup`.
    """
