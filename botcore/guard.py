"""The one guard around plugin code: hooks, commands, handlers, tools and the streams they return.

Whatever a plugin's code does wrong is judged here and only here: a `UserError` becomes its
message, any other exception is logged with the plugin's name and the update id, noted on the turn
and counted against the plugin's circuit breaker; code that worked counts for it. A stream carries
the plugin that made it, so a failure while it is read (by delivery, or by a post_message hook
such as voice) is that plugin's, wherever it happens.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from botcore.plugins import maybe_await
from botcore.turn import Outcome
from botcore.types import Reply, Text, TextStream, UserError, as_reply

if TYPE_CHECKING:
    from botcore.breaker import Breaker
    from botcore.tools import ToolResult
    from botcore.turn import Turn

log = logging.getLogger(__name__)

CURRENT: ContextVar[str | None] = ContextVar("botcore_plugin", default=None)
"""The plugin whose code runs now (set by `Guard.call`): `turn.send` names it as the owner of
the buttons it sends."""
STREAM = "its streamed answer"
"""What a failure while a plugin's stream is read is logged as."""


class Guard:
    """Calls plugin code in isolation and keeps the score (the turn's record, the breaker)."""

    def __init__(self, breaker: Breaker) -> None:
        self.breaker = breaker

    async def call(
        self, plugin: str, what: str, function: Any, turn: Turn, /, *args: Any, **kwargs: Any
    ) -> Reply | None:
        """Call one plugin function: its reply (a stream tagged with `plugin`), a UserError's
        message as Text, or None if it raised (handled by `failed`) or is cooling down (the turn
        notes it as unavailable). What an admin switched off the callers skip themselves, except
        turn_end, which a plugin switched off during the turn still gets."""
        if not self.breaker.allows(plugin):
            turn.record.unavailable.add(plugin)
            return None
        running = CURRENT.set(plugin)
        try:
            reply = as_reply(await maybe_await(function(*args, **kwargs)))
        except UserError as exc:
            self.user_error(turn, plugin)
            return Text(exc.message)
        except Exception as exc:
            self.failed(turn, plugin, what, exc)
            return None
        finally:
            CURRENT.reset(running)
        if isinstance(reply, Text) and reply.buttons and reply.plugin is None:
            reply = dataclasses.replace(reply, plugin=plugin)  # its buttons are this plugin's
        if isinstance(reply, TextStream):
            # Judged once it has been read; it carries its maker to whoever reads it.
            return reply if reply.plugin else dataclasses.replace(reply, plugin=plugin)
        # A pre/post_message hook that returns nothing proves too little to end a switched-off
        # plugin's trial.
        if reply is not None or what not in ("pre_message", "post_message"):
            self.breaker.success(plugin)
        return reply

    def succeeded(self, plugin: str | None) -> None:
        """The plugin's code (a stream read to its end, a tool) worked."""
        if plugin is not None:
            self.breaker.success(plugin)

    def user_error(self, turn: Turn, plugin: str | None) -> None:
        """The plugin refused with a UserError: its message is shown; not the plugin's bug."""
        turn.record.note(Outcome.USER_ERROR)
        self.succeeded(plugin)

    def failed(self, turn: Turn, plugin: str | None, what: str, exc: BaseException) -> None:
        """The plugin's code raised unexpectedly: logged with its name and the update id, noted on
        the turn (the user gets the friendly error) and counted against its circuit breaker."""
        name = plugin or "?"
        log.error("plugin %s failed in %s (update %s)", name, what, turn.update_id, exc_info=exc)
        turn.record.errors.append(name)
        if plugin is not None:
            self.breaker.failure(plugin, f"{type(exc).__name__} in {what}")

    def tool_result(self, plugin: str, result: ToolResult) -> None:
        """Score a tool call, which logged its own failure and tells the model, not the user:
        a bug in the tool counts against its plugin as a command's would; the turn goes on."""
        if result.failure is not None:
            self.breaker.failure(plugin, result.failure)
        elif result.ok:
            self.breaker.success(plugin)

    def reading(self, turn: Turn, stream: TextStream) -> GuardedStream:
        """`stream` as a post_message hook sees it: an unexpected error while it is read is the
        failure of the plugin that made it (then raised on to the reader, which stops)."""

        async def chunks() -> AsyncIterator[str]:
            try:
                async for chunk in stream.chunks:
                    yield chunk
            except (UserError, GeneratorExit):
                raise
            except Exception as exc:
                self.failed(turn, stream.plugin, STREAM, exc)
                raise
            finally:
                aclose = getattr(stream.chunks, "aclose", None)
                if aclose is not None:
                    await aclose()

        return GuardedStream(
            Watched(chunks()), stream.markdown, plugin=stream.plugin, on_show=stream.on_show
        )


class Watched:
    """A stream's chunks, remembering whether anyone began to read them."""

    def __init__(self, chunks: AsyncIterator[str]) -> None:
        self._chunks = chunks
        self.started = False

    def __aiter__(self) -> Watched:
        return self

    async def __anext__(self) -> str:
        self.started = True
        return await anext(self._chunks)

    async def aclose(self) -> None:
        if self.started:
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()


@dataclasses.dataclass(frozen=True)
class GuardedStream(TextStream):
    """A TextStream whose chunks say whether they were read."""

    chunks: Watched
