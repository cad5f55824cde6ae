"""A circuit breaker per plugin: a plugin that keeps failing is switched off for a while, so that
its users get a clear "temporarily unavailable" instead of an error each time, and the admins are
told once.

States: closed (serving) -> open after `failures` unexpected errors within `window` seconds ->
half-open once `cooldown` seconds have passed (calls go through again as a trial: the first success
closes the breaker, the first failure opens it for another cool-down). `reset()` closes it at once
(an admin's /enable). Switching a plugin off by hand is not the breaker's: see `Plugins.state`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass
class PluginState:
    """What the breaker knows about one plugin."""

    failures: deque[float] = field(default_factory=deque)
    """When the recent unexpected errors happened (within the window)."""
    opened_at: float | None = None
    """When the breaker last opened; None while closed."""
    alerted: bool = False
    """The admins were told it is off (and have not yet been told it is back)."""
    last_error: str = ""
    """The type of the last unexpected error and where it happened, for the admins."""


class Breaker:
    """Counts each plugin's unexpected errors and decides whether its code may run now.

    `failures` = 0 turns automatic switching off; `on_change(plugin, state)` is called when a
    plugin opens (first time only, until it is closed again) or closes after having been open.
    """

    def __init__(
        self,
        failures: int,
        window: float,
        cooldown: float,
        *,
        on_change: Callable[[str, State], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window = window
        self.cooldown = cooldown
        self.on_change = on_change
        self.clock = clock
        self.plugins: dict[str, PluginState] = {}

    def _get(self, plugin: str) -> PluginState:
        found = self.plugins.get(plugin)
        if found is None:
            found = self.plugins[plugin] = PluginState()
        return found

    def state(self, plugin: str) -> State:
        """closed, open or half_open (cool-down over, next call is a trial)."""
        found = self.plugins.get(plugin)
        if found is None or found.opened_at is None:
            return "closed"
        if self.clock() - found.opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def allows(self, plugin: str) -> bool:
        """May the plugin's code run now? (closed or half-open)"""
        return self.state(plugin) in ("closed", "half_open")

    def success(self, plugin: str) -> None:
        """A call of the plugin finished normally: a half-open trial closes the breaker."""
        found = self.plugins.get(plugin)
        if found is None or found.opened_at is None:
            return
        if self.state(plugin) != "half_open":
            return  # a call that began before the breaker opened proves nothing
        found.opened_at = None
        found.failures.clear()
        if found.alerted:
            found.alerted = False
            self._changed(plugin, "closed")

    def failure(self, plugin: str, where: str = "") -> None:
        """A call of the plugin raised an unexpected error."""
        if self.failures <= 0:
            return
        found = self._get(plugin)
        now = self.clock()
        found.last_error = where
        if found.opened_at is not None:
            if self.state(plugin) == "half_open":
                found.opened_at = now  # the trial failed: another cool-down, no new alert
            return
        found.failures.append(now)
        while found.failures and now - found.failures[0] > self.window:
            found.failures.popleft()
        if len(found.failures) >= self.failures:
            found.opened_at = now
            found.failures.clear()
            if not found.alerted:
                found.alerted = True
                self._changed(plugin, "open")

    def until(self, plugin: str) -> float | None:
        """While open: the clock time at which the cool-down ends (the next call is a trial)."""
        found = self.plugins.get(plugin)
        if found is None or found.opened_at is None or self.state(plugin) != "open":
            return None
        return found.opened_at + self.cooldown

    def reset(self, plugin: str) -> None:
        """Forget a plugin's failures and close its breaker (an admin's /enable; no alert)."""
        found = self._get(plugin)
        found.opened_at = None
        found.failures.clear()
        found.alerted = False

    def states(self) -> dict[str, State]:
        """Every plugin the breaker has seen that is not closed, with its state."""
        return {name: state for name in self.plugins if (state := self.state(name)) != "closed"}

    def _changed(self, plugin: str, state: State) -> None:
        if self.on_change is not None:
            self.on_change(plugin, state)
