"""Print the hook reference (Markdown) from botcore/hookspecs.py; `--write` puts it in README.md."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

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


README = Path(__file__).resolve().parent.parent / "README.md"


def write(readme: Path = README) -> None:
    """Replace the README's reference: from the first hook heading up to the next "## " section."""
    text = readme.read_text(encoding="utf-8")
    start = text.index("#### `def settings_model")
    end = text.index("\n## ", start) + 1
    readme.write_text(text[:start] + reference().rstrip() + "\n\n" + text[end:], encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        print(reference(), end="")
