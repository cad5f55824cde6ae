"""Plugin functions as tools for the chat model: their OpenAI definitions and a safe way to call them.

A tool is a plain or `async def` function returned by a plugin's `register_tools` hook. Its name,
description and the JSON schema of its arguments come from the function itself (type hints and the
docstring's `Args:` section), checked once at start-up, so a tool can never silently lose an
argument. The same pydantic model validates what the model sends before the function is called.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import inspect
import json
import logging
import re
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.errors import PydanticUserError
from pydantic.fields import FieldInfo

from botcore.config import ConfigError
from botcore.turn import Turn
from botcore.types import Document, Photo, Reply, Text, TextStream, UserError, Voice

if TYPE_CHECKING:
    from botcore.gate import Gate
    from botcore.plugins import Plugins

log = logging.getLogger(__name__)

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"""OpenAI's rule for function names."""
MAX_RESULT_CHARS = 16_000
"""A tool result longer than this is cut: one runaway tool must not fill the context window."""
INJECTED = "turn"
"""A parameter of this name receives the current Turn and is not shown to the model."""
_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Returns|Return|Yields|Raises|Examples?|Notes?):\s*$"
)
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


@dataclasses.dataclass(frozen=True)
class ToolResult:
    """What one tool call came to: the text the model reads, and a reply for the user, if any."""

    content: str
    reply: Reply | None = None
    ok: bool = True
    failure: str | None = None
    """Set when the tool's code failed (an exception, a timeout): what and where, for the
    breaker. Invalid arguments and UserError are not the plugin's failures."""


@dataclasses.dataclass(frozen=True)
class Tool:
    """One function the model may call, with the model that describes and validates its arguments."""

    plugin: str
    name: str
    description: str
    function: Callable[..., Any]
    arguments: type[BaseModel]
    wants_turn: bool
    definition: dict[str, Any] = dataclasses.field(init=False, repr=False, compare=False)
    """The entry of the request's `tools` list (Chat Completions function tools), made once."""

    def __post_init__(self) -> None:
        schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        definition = {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": schema},
        }
        object.__setattr__(self, "definition", definition)

    async def call(self, turn: Turn, arguments: str, *, timeout: float) -> ToolResult:  # noqa: ASYNC109
        """Validate the model's JSON arguments and run the tool; every failure becomes an error
        text for the model (logged with the plugin's name), never an exception."""
        try:
            parsed = self.arguments.model_validate_json(arguments or "{}")
        except ValidationError as exc:
            return ToolResult(f"Error: invalid arguments for {self.name}: {_errors(exc)}", ok=False)
        kwargs = {name: getattr(parsed, name) for name in type(parsed).model_fields}
        if self.wants_turn:
            kwargs[INJECTED] = turn

        async def run() -> Any:
            if inspect.iscoroutinefunction(self.function):
                return await self.function(**kwargs)
            # A worker thread: a blocking tool never stalls the other chats.
            value = await asyncio.to_thread(self.function, **kwargs)
            return await value if inspect.isawaitable(value) else value

        return await _guarded(self.plugin, self.name, turn, timeout, run)


class ToolSource(abc.ABC):
    """Tools a plugin learns at run time (an MCP server's, say): return one from `register_tools`
    beside plain functions. The core asks it on every request, so what it offers may change."""

    @abc.abstractmethod
    def definitions(self) -> Sequence[Mapping[str, Any]]:
        """The tools offered now, in OpenAI's function format: {"type": "function", "function":
        {"name", "description", "parameters"}}. Return the same list while nothing changed: each
        new list is checked once (a bad or clashing entry is logged and left out)."""

    @abc.abstractmethod
    async def call(self, turn: Turn, name: str, arguments: dict[str, Any]) -> str | Reply:
        """Run tool `name` with the model's arguments (a JSON object, not checked against the
        schema). Raise UserError to tell the model what went wrong; anything else is a failure."""

    async def describe(self) -> list[str]:
        """Lines `botcore plugins` prints under the plugin (what the source would offer: it may
        connect to find out; start-up has not run). None by default."""
        return []


@dataclasses.dataclass(frozen=True)
class _Offer:
    """One list a ToolSource returned, checked: its definitions and their size."""

    given: object
    definitions: list[dict[str, Any]]
    names: frozenset[str]
    size: int


class Tools:
    """Every tool of every loaded plugin, by name: functions built (and checked) at start-up, and
    what the plugins' ToolSources offer at the moment."""

    def __init__(
        self,
        tools: Sequence[Tool] = (),
        serving: Callable[[str], bool] = lambda _: True,
        sources: Sequence[tuple[str, ToolSource]] = (),
    ) -> None:
        self.by_name = {tool.name: tool for tool in tools}
        self.serving = serving
        """Whether a plugin's code may run now (not switched off, not cooling down)."""
        self.sources = list(sources)
        """(plugin, source) pairs, in plugin order: tools that come and go at run time."""
        self._definitions = [tool.definition for tool in tools]
        self._some: dict[frozenset[str], list[dict[str, Any]]] = {}
        self._size = len(json.dumps(self._definitions, ensure_ascii=False)) if tools else 0
        self._offers: list[_Offer | None] = [None] * len(self.sources)
        self._joined: tuple[tuple[object, ...], list[dict[str, Any]]] | None = None
        self._warned: set[str] = set()
        self.gate: Gate | None = None
        """The permission gate of every call (botcore.gate), set by the runtime."""

    @classmethod
    async def collect(
        cls, plugins: Plugins, serving: Callable[[str], bool], **kwargs: Any
    ) -> Tools:
        """Call every `register_tools` hook; a bad tool or a name clash is a ConfigError.
        `serving(plugin)` says whether a plugin's tools may be offered and run now."""
        found: dict[str, Tool] = {}
        sources: list[tuple[str, ToolSource]] = []
        for plugin, functions in await plugins.collect("register_tools", **kwargs):
            for function in functions:
                if isinstance(function, ToolSource):
                    sources.append((plugin, function))
                    continue
                tool = describe(plugin, function)
                other = found.get(tool.name)
                if other is not None:
                    raise ConfigError(
                        f"tool {tool.name!r} is registered by both {other.plugin!r} and {plugin!r}"
                    )
                found[tool.name] = tool
        return cls(list(found.values()), serving, sources)

    @property
    def size(self) -> int:
        """Characters the definitions add to every request (for context budgets)."""
        return self._size + sum(offer.size for offer in self._offered() if offer is not None)

    def __bool__(self) -> bool:
        return bool(self.by_name) or bool(self.sources)

    def __len__(self) -> int:
        return len(self.by_name) + sum(len(o.names) for o in self._offered() if o is not None)

    def of(self, plugin: str) -> list[str]:
        """The names of one plugin's tools (a source's: those it offers now)."""
        names = [name for name, tool in self.by_name.items() if tool.plugin == plugin]
        for (owner, _), offer in zip(self.sources, self._offered(), strict=True):
            if owner == plugin and offer is not None:
                names += [d["function"]["name"] for d in offer.definitions]
        return names

    def definitions(self, turn: Turn | None = None) -> list[dict[str, Any]]:
        """The request's `tools` list, without the tools of plugins switched off, nor (given the
        `turn`) those the gate keeps from its sender there."""
        every = self._definitions_now()
        return every if turn is None or self.gate is None else self.gate.offer(turn, every)

    def _definitions_now(self) -> list[dict[str, Any]]:
        """Every tool offered now (built once for each set of plugins off and of source lists:
        a request must not change it)."""
        off = frozenset(p for p in self._plugins() if not self.serving(p))
        found = self._some.get(off)
        if found is None:
            found = self._some[off] = [
                tool.definition for tool in self.by_name.values() if tool.plugin not in off
            ]
        if not self.sources:
            return found
        offers = [
            offer if offer is not None and plugin not in off else None
            for (plugin, _), offer in zip(self.sources, self._offered(), strict=True)
        ]
        key = (found, *offers)
        if (
            self._joined is None
            or len(self._joined[0]) != len(key)
            or any(a is not b for a, b in zip(self._joined[0], key, strict=True))
        ):
            joined = list(found)
            for offer in offers:
                if offer is not None:
                    joined += offer.definitions
            self._joined = (key, joined)
        return self._joined[1]

    async def call(
        self,
        turn: Turn,
        name: str,
        arguments: str,
        *,
        timeout: float,  # noqa: ASYNC109
    ) -> ToolResult:
        """Run the tool the model asked for, through the gate; an unknown name is an error text,
        like any failure."""
        owner = self._owner(name)
        if self.gate is None or owner is None or not self.serving(owner[0]):
            # Nothing would run (no such tool, or its plugin is off): no approval to ask the user
            # for, no rate to count; _call tells the model why.
            return await self._call(turn, name, arguments, timeout)
        return await self.gate.call(
            turn, name, arguments, lambda: self._call(turn, name, arguments, timeout)
        )

    async def _call(self, turn: Turn, name: str, arguments: str, timeout: float) -> ToolResult:  # noqa: ASYNC109
        owner = self._owner(name)
        if owner is None:
            known = ", ".join(d["function"]["name"] for d in self.definitions(turn)) or "none"
            return ToolResult(f"Error: there is no tool {name!r} (tools: {known}).", ok=False)
        plugin, found = owner
        if not self.serving(plugin):  # switched off since the model was offered it
            turn.record.unavailable.add(plugin)
            return ToolResult(f"Error: {name} is switched off right now.", ok=False)
        if isinstance(found, Tool):
            result = await found.call(turn, arguments, timeout=timeout)
        else:
            result = await _call_source(plugin, found, turn, name, arguments, timeout)
        turn.runtime.guard.tool_result(plugin, result)
        return result

    def _owner(self, name: str) -> tuple[str, Tool | ToolSource] | None:
        """The plugin and the function or source behind tool `name`, or None if none has it."""
        tool = self.by_name.get(name)
        return (tool.plugin, tool) if tool is not None else self._source_of(name)

    def _plugins(self) -> set[str]:
        return {t.plugin for t in self.by_name.values()} | {p for p, _ in self.sources}

    def _source_of(self, name: str) -> tuple[str, ToolSource] | None:
        for pair, offer in zip(self.sources, self._offered(), strict=True):
            if offer is not None and name in offer.names:
                return pair
        return None

    def _offered(self) -> list[_Offer | None]:
        """Each source's current list, checked when it is a new one: a bad entry, or a name that
        a plugin's function or an earlier source has, is logged once and left out."""
        taken = set(self.by_name)
        for index, (plugin, source) in enumerate(self.sources):
            try:
                given = source.definitions()
            except Exception:
                self._warn(f"plugin {plugin}: its tool source failed to list its tools", True)
                self._offers[index] = None
                continue
            offer = self._offers[index]
            if offer is None or offer.given is not given or offer.names & taken:
                offer = self._offers[index] = self._check(plugin, given, taken)
            taken |= offer.names
        return self._offers

    def _check(self, plugin: str, given: Sequence[Mapping[str, Any]], taken: set[str]) -> _Offer:
        kept: list[dict[str, Any]] = []
        names: set[str] = set()
        for entry in given:
            function = entry.get("function") if isinstance(entry, Mapping) else None
            name = function.get("name") if isinstance(function, Mapping) else None
            where = f"plugin {plugin}: tool {name!r}"
            if not isinstance(function, Mapping) or entry.get("type") != "function":
                self._warn(f"plugin {plugin}: a tool source entry is not a function tool")
            elif not isinstance(name, str) or not TOOL_NAME.match(name):
                self._warn(f"{where}: the name must be 1-64 of a-z, A-Z, 0-9, _ and -; left out")
            elif name in taken or name in names:
                self._warn(f"{where}: another tool has this name; left out")
            elif not isinstance(function.get("parameters"), Mapping) or (
                function["parameters"].get("type") != "object"
            ):
                self._warn(f"{where}: its parameters must be a JSON schema of an object; left out")
            else:
                clean: dict[str, Any] = {"name": name, "parameters": dict(function["parameters"])}
                if function.get("description"):
                    clean["description"] = str(function["description"])
                kept.append({"type": "function", "function": clean})
                names.add(name)
        size = len(json.dumps(kept, ensure_ascii=False)) if kept else 0
        return _Offer(given, kept, frozenset(names), size)

    def _warn(self, message: str, trace: bool = False) -> None:
        """Log a problem with a source's tools once, not at every request."""
        if message not in self._warned:
            self._warned.add(message)
            log.warning(message, exc_info=trace)


async def _call_source(
    plugin: str, source: ToolSource, turn: Turn, name: str, arguments: str, seconds: float
) -> ToolResult:
    """Call a source's tool with the model's arguments, which must be a JSON object."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError as exc:
        parsed = exc
    if not isinstance(parsed, dict):
        return ToolResult(f"Error: invalid arguments for {name}: not a JSON object.", ok=False)
    return await _guarded(plugin, name, turn, seconds, lambda: source.call(turn, name, parsed))


async def _guarded(
    plugin: str, name: str, turn: Turn, seconds: float, run: Callable[[], Awaitable[Any]]
) -> ToolResult:
    """Run a tool within `seconds`: its value for the model, or an error text (logged with the
    plugin's name) for a timeout, a UserError or any other exception; never an exception."""
    try:
        async with asyncio.timeout(seconds):
            value = await run()
    except TimeoutError:
        log.warning(
            "plugin %s: tool %s timed out after %s s (update %s)",
            plugin,
            name,
            seconds,
            turn.update_id,
        )
        return ToolResult(
            f"Error: {name} timed out after {seconds:g} s.",
            ok=False,
            failure=f"timeout in tool {name}",
        )
    except UserError as exc:
        return ToolResult(f"Error: {exc.message}", ok=False)
    except Exception as exc:
        log.exception("plugin %s: tool %s failed (update %s)", plugin, name, turn.update_id)
        return ToolResult(
            f"Error: {name} failed with an internal error ({type(exc).__name__}).",
            ok=False,
            failure=f"{type(exc).__name__} in tool {name}",
        )
    return _result(value)


def describe(plugin: str, function: Any) -> Tool:
    """Build a Tool from a function's signature and docstring; ConfigError naming the plugin and
    the tool for anything the model could not be told about exactly."""
    name = getattr(function, "__name__", None)
    if not callable(function) or not isinstance(name, str):
        raise ConfigError(
            f"plugin {plugin!r}: register_tools must return functions, not {function!r:.60}"
        )
    where = f"plugin {plugin!r}: tool {name!r}"
    if not TOOL_NAME.match(name):
        raise ConfigError(f"{where}: the name must be 1-64 of a-z, A-Z, 0-9, _ and -")
    description, arg_docs = parse_docstring(inspect.getdoc(function) or "")
    if not description:
        raise ConfigError(f"{where}: needs a docstring saying what it does (the model reads it)")
    try:
        signature = inspect.signature(function)
        hints = typing.get_type_hints(function, localns={"Turn": Turn}, include_extras=True)
    except Exception as exc:
        raise ConfigError(
            f"{where}: cannot read its type hints: {type(exc).__name__}: {exc}"
        ) from None
    fields: dict[str, Any] = {}
    wants_turn = False
    for param in signature.parameters.values():
        arg = f"{where}: argument {param.name!r}"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigError(f"{arg}: *args and **kwargs cannot be described to the model")
        if param.kind is param.POSITIONAL_ONLY:
            raise ConfigError(f"{arg}: must not be positional-only (tools are called by keyword)")
        if param.name == INJECTED:
            hint = hints.get(param.name)
            if hint is not None and hint is not Turn:
                raise ConfigError(f"{arg}: the injected turn must be annotated `Turn`")
            wants_turn = True
            continue
        if param.name not in hints:
            raise ConfigError(f"{arg}: has no type hint")
        hint = hints[param.name]
        if hint is Any:
            raise ConfigError(f"{arg}: Any cannot be described to the model; give a type")
        doc = arg_docs.get(param.name) or _annotated_description(hint)
        if not doc:
            raise ConfigError(f"{arg}: has no description (add it under Args: in the docstring)")
        try:
            TypeAdapter(hint).json_schema()
        except (PydanticUserError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{arg}: the type {_name(hint)} cannot be told to the model ({_first(exc)})"
            ) from None
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hint, Field(default, description=doc))
    unknown = sorted(set(arg_docs) - set(fields) - {INJECTED})
    if unknown:
        raise ConfigError(f"{where}: its docstring describes no such argument {unknown[0]!r}")
    try:
        model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        model.model_json_schema()
    except (PydanticUserError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{where}: its arguments cannot be told to the model ({_first(exc)})"
        ) from None
    return Tool(plugin, name, description, function, model, wants_turn)


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """A Google-style docstring: (the text before its sections, {argument: description})."""
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    base: int | None = None  # the indentation of the argument names under Args:
    current: str | None = None
    for line in doc.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        heading = _SECTION.match(stripped)
        if heading and indent == 0:
            section, base, current = heading.group(1), None, None
        elif section is None:
            summary.append(stripped)
        elif section in ("Args", "Arguments", "Parameters") and stripped:
            base = indent if base is None else base
            match = _ARG_LINE.match(stripped)
            if match and indent <= base:
                current = match.group(1).lstrip("*")
                args[current] = match.group(2).strip()
            elif current is not None:
                args[current] = f"{args[current]} {stripped}".strip()
    return " ".join(" ".join(summary).split()), args


def _first(exc: BaseException) -> str:
    """The first sentence of an error, for a one-line start-up message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(". ")[0]


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or repr(hint)


def _annotated_description(hint: Any) -> str | None:
    """The description of `Annotated[str, Field(description=...)]`, the other way to give one."""
    for meta in getattr(hint, "__metadata__", ()):
        if isinstance(meta, FieldInfo) and meta.description:
            return meta.description
    return None


def _errors(exc: ValidationError) -> str:
    """Pydantic's errors in one line the model can act on."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(p) for p in error["loc"]) or "arguments"
        parts.append(f"{loc}: {error['msg']}")
    return "; ".join(parts)


def _result(value: Any) -> ToolResult:
    """What the model reads for a tool's return value; a Reply goes to the user instead."""
    if isinstance(value, Photo | Voice | Document | Text):
        kind = type(value).__name__.lower()
        if isinstance(value, Text):
            note = "the text was sent to the user"
        else:
            caption = f" (caption: {value.caption})" if value.caption else ""
            note = f"the {kind} was sent to the user{caption}"
        return ToolResult(f"Done: {note}. Do not repeat it; answer briefly.", value)
    if isinstance(value, TextStream):
        return ToolResult("Error: a tool cannot answer with a text stream.", ok=False)
    if isinstance(value, str):
        text = value
    elif value is None:
        text = "Done."
    elif isinstance(value, BaseModel):
        text = value.model_dump_json()
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(value)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + " …[cut]"
    return ToolResult(text)
