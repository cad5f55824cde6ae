"""Plugin functions as tools for the chat model: their OpenAI definitions and a safe way to call them.

A tool is a plain or `async def` function returned by a plugin's `register_tools` hook. Its name,
description and the JSON schema of its arguments come from the function itself (type hints and the
docstring's `Args:` section), checked once at start-up, so a tool can never silently lose an
argument. The same pydantic model validates what the model sends before the function is called.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import re
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.errors import PydanticUserError
from pydantic.fields import FieldInfo

from botcore.config import ConfigError
from botcore.turn import Turn
from botcore.types import Document, Photo, Reply, Text, TextStream, UserError, Voice

if TYPE_CHECKING:
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
        try:
            async with asyncio.timeout(timeout):
                if inspect.iscoroutinefunction(self.function):
                    value = await self.function(**kwargs)
                else:  # a worker thread: a blocking tool never stalls the other chats
                    value = await asyncio.to_thread(self.function, **kwargs)
                    if inspect.isawaitable(value):
                        value = await value
        except TimeoutError:
            log.warning(
                "plugin %s: tool %s timed out after %s s (update %s)",
                self.plugin,
                self.name,
                timeout,
                turn.update_id,
            )
            return ToolResult(
                f"Error: {self.name} timed out after {timeout:g} s.",
                ok=False,
                failure=f"timeout in tool {self.name}",
            )
        except UserError as exc:
            return ToolResult(f"Error: {exc.message}", ok=False)
        except Exception as exc:
            log.exception(
                "plugin %s: tool %s failed (update %s)", self.plugin, self.name, turn.update_id
            )
            return ToolResult(
                f"Error: {self.name} failed with an internal error ({type(exc).__name__}).",
                ok=False,
                failure=f"{type(exc).__name__} in tool {self.name}",
            )
        return _result(value)


class Tools:
    """Every tool of every loaded plugin, by name; built (and checked) at start-up."""

    def __init__(
        self, tools: Sequence[Tool] = (), serving: Callable[[str], bool] = lambda _: True
    ) -> None:
        self.by_name = {tool.name: tool for tool in tools}
        self.serving = serving
        """Whether a plugin's code may run now (not switched off, not cooling down)."""
        self._definitions = [tool.definition for tool in tools]
        self._some: dict[frozenset[str], list[dict[str, Any]]] = {}
        self.size = len(json.dumps(self._definitions, ensure_ascii=False)) if tools else 0
        """Characters the definitions add to every request (for context budgets)."""

    @classmethod
    async def collect(
        cls, plugins: Plugins, serving: Callable[[str], bool], **kwargs: Any
    ) -> Tools:
        """Call every `register_tools` hook; a bad tool or a name clash is a ConfigError.
        `serving(plugin)` says whether a plugin's tools may be offered and run now."""
        found: dict[str, Tool] = {}
        for plugin, functions in await plugins.collect("register_tools", **kwargs):
            for function in functions:
                tool = describe(plugin, function)
                other = found.get(tool.name)
                if other is not None:
                    raise ConfigError(
                        f"tool {tool.name!r} is registered by both {other.plugin!r} and {plugin!r}"
                    )
                found[tool.name] = tool
        return cls(list(found.values()), serving)

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def __len__(self) -> int:
        return len(self.by_name)

    def of(self, plugin: str) -> list[str]:
        """The names of one plugin's tools."""
        return [name for name, tool in self.by_name.items() if tool.plugin == plugin]

    def definitions(self) -> list[dict[str, Any]]:
        """The request's `tools` list, without the tools of plugins switched off (built once for
        each set of plugins off: a request must not change it)."""
        off = frozenset(p for p in {t.plugin for t in self.by_name.values()} if not self.serving(p))
        if not off:
            return self._definitions
        found = self._some.get(off)
        if found is None:
            found = self._some[off] = [
                tool.definition for tool in self.by_name.values() if tool.plugin not in off
            ]
        return found

    async def call(
        self,
        turn: Turn,
        name: str,
        arguments: str,
        *,
        timeout: float,  # noqa: ASYNC109
    ) -> ToolResult:
        """Run the tool the model asked for; an unknown name is an error text, like any failure."""
        tool = self.by_name.get(name)
        if tool is None:
            known = ", ".join(self.by_name) or "none"
            return ToolResult(f"Error: there is no tool {name!r} (tools: {known}).", ok=False)
        if not self.serving(tool.plugin):  # switched off since the model was offered it
            turn.record.unavailable.add(tool.plugin)
            return ToolResult(f"Error: {name} is switched off right now.", ok=False)
        result = await tool.call(turn, arguments, timeout=timeout)
        turn.runtime.guard.tool_result(tool.plugin, result)
        return result


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
