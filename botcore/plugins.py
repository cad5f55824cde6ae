"""Find the plugins bot.toml names, register them with pluggy, and call their hooks one by one.

Resolution order for a name: a first-party plugin (the `botcore` entry points of botcore itself),
then an entry point in the `botcore` group of any installed package, then a dotted module path.
Only the plugins asked for are imported, so one broken installed package cannot stop the bot.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from botcore import hookspecs
from botcore.app import PluginState
from botcore.config import ConfigError, did_you_mean
from botcore.types import PluginInfo

if TYPE_CHECKING:
    from botcore.breaker import Breaker

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "botcore"
DISTRIBUTION = "botcore-framework"
"""botcore's name on PyPI (`botcore` there is another project); the import name is botcore."""
BUILTIN_PLUGINS = {"welcome": "botcore.welcome"}
"""Always loaded, before the ones bot.toml lists: /start and /help."""
CORE = "botcore"
"""The owner of the core's own command (/cancel) where a plugin's name would be."""


def available_plugins() -> dict[str, metadata.EntryPoint]:
    """Every name in the `botcore` entry point group; botcore's own win a name clash."""
    found: dict[str, metadata.EntryPoint] = {}
    names: dict[int, str] = {}  # a distribution's name parses its METADATA: once per package
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        if dist is not None and id(dist) not in names:
            names[id(dist)] = dist.name
        first_party = dist is not None and names[id(dist)] == DISTRIBUTION
        if ep.name not in found or first_party:
            found[ep.name] = ep
    return found


def resolve(
    name: str,
    index: int | None = None,
    entry_points: dict[str, metadata.EntryPoint] | None = None,
) -> tuple[ModuleType, str, str]:
    """Import the plugin called `name`: (module, version, where it came from). `entry_points`:
    `available_plugins()`, when the caller has it already (the scan takes milliseconds)."""
    where = f"bot.plugins[{index}]" if index is not None else "plugin"
    if name in BUILTIN_PLUGINS:
        return importlib.import_module(BUILTIN_PLUGINS[name]), _botcore_version(), "built-in"
    if entry_points is None:
        entry_points = available_plugins()
    ep = entry_points.get(name)
    if ep is not None:
        dist = ep.dist
        try:
            loaded = ep.load()
        except Exception as exc:
            raise ConfigError(f"{where}: plugin {name!r} failed to import: {_cause(exc)}") from None
        module = loaded if isinstance(loaded, ModuleType) else inspect.getmodule(loaded)
        if module is None:
            raise ConfigError(f"{where}: entry point {name!r} is not a module")
        if dist is not None and dist.name == DISTRIBUTION:
            source = "first-party"
        else:
            source = f"entry point from {dist.name if dist else 'unknown'}"
        return module, _version(dist) if dist else "?", source
    choices = [*BUILTIN_PLUGINS, *entry_points]
    unknown = f"{where}: unknown plugin {name!r}{did_you_mean(name, choices)}"
    if _looks_like_module_path(name):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                raise ConfigError(unknown) from None
            raise ConfigError(f"{where}: plugin {name!r} failed to import: {_cause(exc)}") from None
        except Exception as exc:
            raise ConfigError(f"{where}: plugin {name!r} failed to import: {_cause(exc)}") from None
        version = str(getattr(module, "__version__", "?"))
        return module, version, f"module {getattr(module, '__file__', name)}"
    raise ConfigError(unknown)


def _looks_like_module_path(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@functools.lru_cache(maxsize=16)
def _version(dist: metadata.Distribution) -> str:
    """A distribution's version (reading it parses its METADATA: once for all its plugins)."""
    return dist.version


def _botcore_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "?"


@dataclass(frozen=True)
class Impl:
    """One plugin's implementation of one hook."""

    plugin: str
    function: Any
    argnames: tuple[str, ...]

    def __call__(self, **kwargs: Any) -> Any:
        return self.function(*(kwargs[name] for name in self.argnames))


class Plugins:
    """The loaded plugins, in bot.toml order, and a caller that isolates each one."""

    def __init__(self, names: list[str], breaker: Breaker | None = None) -> None:
        self.breaker = breaker
        """The circuit breaker whose cool-downs switch a failing plugin off for a while."""
        self.pm = pluggy.PluginManager("botcore")
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self._disabled: set[str] = set()
        loaded: list[tuple[str, ModuleType]] = []
        wanted = [*BUILTIN_PLUGINS, *(n for n in names if n not in BUILTIN_PLUGINS)]
        entry_points = available_plugins()
        for name in wanted:
            index = names.index(name) if name in names else None
            module, version, source = resolve(name, index, entry_points)
            if any(module is other for _, other in loaded):
                raise ConfigError(f"bot.plugins[{index}]: plugin {name!r} is already loaded")
            loaded.append((name, module))
            self.infos.append(PluginInfo(name=name, module=module, version=version, source=source))
        # pluggy calls the last registered first; register backwards so bot.toml order holds.
        for name, module in reversed(loaded):
            try:
                self.pm.register(module, name=name)
            except (ValueError, pluggy.PluginValidationError) as exc:
                raise ConfigError(f"plugin {name!r}: {exc}") from None
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            plugin = getattr(exc, "plugin", None)
            culprit = (self.pm.get_name(plugin) if plugin is not None else None) or "?"
            raise ConfigError(f"plugin {culprit!r}: {_first_line(str(exc))}") from None
        self._refuse_wrappers()
        for info in self.infos:
            info.hooks = sorted(
                caller.name for caller in self.pm.get_hookcallers(info.module) or []
            )

    def _refuse_wrappers(self) -> None:
        """pluggy would accept `@hookimpl(wrapper=True)` / `hookwrapper=True`, but botcore calls
        each plugin on its own (to await and isolate it), so a wrapper would never wrap anything:
        a start-up error naming the plugin and the hook, rather than a hook that silently fails."""
        for info in self.infos:
            for caller in self.pm.get_hookcallers(info.module) or []:
                impl = next(i for i in caller.get_hookimpls() if i.plugin is info.module)
                if impl.hookwrapper or impl.wrapper:
                    kind = "hookwrapper=True" if impl.hookwrapper else "wrapper=True"
                    raise ConfigError(
                        f"plugin {info.name!r}: {caller.name} is a hook wrapper "
                        f"(@hookimpl({kind})), which botcore does not run; implement the hook "
                        "as a plain function"
                    )

    @property
    def names(self) -> list[str]:
        """Loaded plugin names, built-ins first, then bot.toml order."""
        return [info.name for info in self.infos]

    def disable(self, name: str) -> None:
        """Switch a loaded plugin off at run time: its turn hooks, commands and handlers are
        skipped until `enable(name)` (start-up, shutdown and registration hooks still run)."""
        if name not in self.names:
            raise KeyError(name)
        self._disabled.add(name)

    def enable(self, name: str) -> None:
        """Switch a plugin back on, out of a cool-down too (its failures are forgotten)."""
        self._disabled.discard(name)
        if self.breaker is not None:
            self.breaker.reset(name)

    def enabled(self, name: str) -> bool:
        """False while an admin has the plugin switched off (see `state` for the whole story)."""
        return name not in self._disabled

    def state(self, name: str) -> PluginState:
        """The one answer to "does this plugin run now, and if not, why": on (a trial after a
        cool-down counts as on), off by an admin, or cooling down after failures."""
        if name in self._disabled:
            return PluginState("off")
        until = self.breaker.until(name) if self.breaker is not None else None
        if until is not None and self.breaker is not None:
            return PluginState("cooling_down", max(0.0, until - self.breaker.clock()))
        return PluginState("on")

    def serving(self, name: str) -> bool:
        """Whether the plugin's code may run now: its state is on."""
        return self.state(name).state == "on"

    def impls(self, hook: str, *, disabled: bool = False) -> Iterator[Impl]:
        """The implementations of `hook` in calling order (bot.toml order, tryfirst/trylast);
        plugins switched off are left out unless `disabled=True`."""
        caller = getattr(self.pm.hook, hook)
        for impl in reversed(caller.get_hookimpls()):
            name = impl.plugin_name or "?"
            if disabled or name not in self._disabled:
                yield Impl(name, impl.function, tuple(impl.argnames))

    async def collect(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a registration hook on every plugin, sync or `async def`: [(plugin, result)].

        These run once at start-up, so a plugin that raises here stops start-up, naming it.
        """
        results = []
        for impl in self.impls(hook, disabled=True):
            try:
                result = await maybe_await(impl(**kwargs))
            except ConfigError:
                raise
            except Exception as exc:
                raise ConfigError(f"plugin {impl.plugin!r}: {hook} failed: {_cause(exc)}") from None
            if result is not None:
                results.append((impl.plugin, result))
        return results


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


async def maybe_await(value: Any) -> Any:
    """Await `value` if it is awaitable: hooks and handlers may be sync or async."""
    if inspect.isawaitable(value):
        return await value
    return value
