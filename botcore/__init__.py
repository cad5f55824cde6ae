"""botcore: a plugin-based Telegram bot framework. This module is the whole public API for plugins."""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("botcore")
"""Mark a plugin function as the implementation of the hook of the same name (botcore.hookspecs)."""

from botcore.ai import explain_api_error, is_api_error  # noqa: E402
from botcore.app import App, PluginDescription, PluginState  # noqa: E402
from botcore.config import ConfigError, StartupError, StrictModel  # noqa: E402
from botcore.metrics import Metrics  # noqa: E402
from botcore.store import (  # noqa: E402
    SCHEMA_VERSION,
    Change,
    ChatMessage,
    HistoryStore,
    NewerSchema,
    Signal,
    Store,
    check_schema,
)
from botcore.tools import ToolSource  # noqa: E402
from botcore.turn import Turn  # noqa: E402
from botcore.types import (  # noqa: E402
    Button,
    Command,
    Document,
    Handler,
    Invoice,
    Photo,
    Reasoning,
    Reply,
    Text,
    TextStream,
    UserError,
    Voice,
)

__all__ = [
    "SCHEMA_VERSION",
    "App",
    "Button",
    "Change",
    "ChatMessage",
    "Command",
    "ConfigError",
    "Document",
    "Handler",
    "HistoryStore",
    "Invoice",
    "Metrics",
    "NewerSchema",
    "Photo",
    "PluginDescription",
    "PluginState",
    "Reasoning",
    "Reply",
    "Signal",
    "StartupError",
    "Store",
    "StrictModel",
    "Text",
    "TextStream",
    "ToolSource",
    "Turn",
    "UserError",
    "Voice",
    "check_schema",
    "explain_api_error",
    "hookimpl",
    "is_api_error",
]
