"""Turn errors from an OpenAI-compatible API into clear messages for the user, in their language."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from botcore.turn import Outcome
from botcore.types import UserError

if TYPE_CHECKING:
    from botcore.turn import Turn

log = logging.getLogger(__name__)


def is_api_error(exc: BaseException) -> bool:
    """Whether `exc` is one of the OpenAI SDK's errors, without importing the SDK (a turn that
    succeeds never loads it): such an error exists only once the SDK is loaded."""
    openai = sys.modules.get("openai")
    return openai is not None and isinstance(exc, openai.OpenAIError)


def explain_api_error(exc: BaseException, turn: Turn, *, plugin: str) -> UserError:
    """The UserError to show for an API failure; operator problems (bad key, unknown model) are
    logged loudly and shown as the generic error, since the user can do nothing about them."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        key = "ai.timeout"
    elif isinstance(exc, openai.APIConnectionError):
        key = "ai.unavailable"
    elif isinstance(exc, openai.RateLimitError):
        key = "ai.rate_limited"
    elif isinstance(exc, (openai.InternalServerError, openai.APIResponseValidationError)):
        key = "ai.unavailable"  # a server error, or a body that is not what the API sends
    elif isinstance(exc, openai.BadRequestError):
        code = str(exc.code or "")
        message = str(exc.message or "").lower()
        if "content_policy" in code or "content_filter" in code or "safety" in message:
            key = "ai.content_policy"
        elif "context_length" in code or "maximum context" in message:
            key = "ai.too_long"
        else:
            key = "error"
            log.error(
                "plugin %s: the API refused the request (update %s): %s",
                plugin,
                turn.update_id,
                exc,
            )
    elif isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
        key = "ai.unavailable"
    else:
        key = "error"
        log.error("plugin %s: API call failed (update %s): %r", plugin, turn.update_id, exc)
    if key not in ("error",):
        log.warning(
            "plugin %s: API call failed (update %s): %s", plugin, turn.update_id, type(exc).__name__
        )
    turn.record.note(Outcome.MODEL_ERROR)
    turn.runtime.metrics.count("model_errors", plugin=plugin, reason=key.removeprefix("ai."))
    return UserError(turn.t(key))
