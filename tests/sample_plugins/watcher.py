"""Watches settings changed in chat: what `app.overrides` held at each `settings_changed`."""

from __future__ import annotations

from typing import Any

from botcore import App, hookimpl

SEEN: list[tuple[int, dict[str, Any]]] = []
"""(id of the app, its overrides) at every call, in order."""


@hookimpl
def settings_changed(app: App) -> None:
    SEEN.append((id(app), dict(app.overrides)))
