"""Print the hook reference (Markdown) from botcore/hookspecs.py; the README embeds its output."""

from __future__ import annotations

import inspect

from botcore import hookspecs


def reference() -> str:
    """One section per hook: signature, then the docstring as written."""
    parts = []
    hooks = [
        f
        for _, f in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(f, "botcore_spec")
    ]
    for function in sorted(hooks, key=lambda f: f.__code__.co_firstlineno):
        name = function.__name__
        signature = str(inspect.signature(function)).replace("'", "")
        prefix = "async def" if inspect.iscoroutinefunction(function) else "def"
        doc = inspect.cleandoc(function.__doc__ or "")
        parts.append(f"#### `{prefix} {name}{signature}`\n\n{doc}\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(reference(), end="")
