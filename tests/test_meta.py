"""The kit and the docs keep their promises: the network guard, the README's hook reference."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from botcore import hookspecs
from botcore.testing.guard import NetworkBlocked, loopback_only

REPO = Path(__file__).resolve().parent.parent


def test_guard_refuses_non_loopback_and_allows_loopback() -> None:
    with loopback_only() as refused:
        with pytest.raises(NetworkBlocked):
            socket.create_connection(("93.184.216.34", 443), timeout=1)
        with pytest.raises(NetworkBlocked):
            socket.getaddrinfo("api.telegram.org", 443)
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        socket.create_connection(server.getsockname(), timeout=1).close()
        server.close()
    assert refused == ["93.184.216.34", "api.telegram.org"]


def test_readme_hook_reference_is_generated_from_hookspecs() -> None:
    generated = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "hook_reference.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert generated.strip() in (REPO / "README.md").read_text(encoding="utf-8")


def test_every_hook_is_documented() -> None:
    hooks = [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "botcore_spec")]
    assert len(hooks) >= 9
    for name in hooks:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"hook {name} has no docstring"


_HOOKIMPL = re.compile(
    r"^[ \t]*@(?:botcore\.)?hookimpl\b[^\n]*\n(?:[ \t]*@[^\n]*\n)*[ \t]*(?:async[ \t]+)?def[ \t]+(\w+)\(",
    re.MULTILINE,
)


def test_every_hook_is_implemented_by_a_tested_plugin() -> None:
    """Every hook in hookspecs has a `def <hook>(` under @hookimpl in some test or example plugin."""
    hooks = {name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "botcore_spec")}
    implemented: set[str] = set()
    for folder in ("tests", "examples"):
        for source in (REPO / folder).rglob("*.py"):
            implemented |= set(_HOOKIMPL.findall(source.read_text(encoding="utf-8")))
    assert implemented & hooks, "the scan found no hook implementations at all"
    untested = hooks - implemented
    assert not untested, f"no test plugin implements these hooks: {sorted(untested)}"


def test_readme_quickstart_is_the_ci_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "./run.sh" in readme and "./test.sh" in readme
    assert "./test.sh" in (REPO / ".ci" / "run").read_text()


def test_readme_example_is_the_tested_package() -> None:
    source = (REPO / "examples" / "botcore-dice" / "botcore_dice" / "__init__.py").read_text(
        encoding="utf-8"
    )
    assert source.strip() in (REPO / "README.md").read_text(encoding="utf-8")


def test_every_package_is_in_the_distribution() -> None:
    """An editable install imports any folder; a wheel ships only the packages pyproject lists."""
    import tomllib

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "botcore").rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    for name, folder in setuptools["package-dir"].items():
        assert name in listed and (REPO / folder / "__init__.py").is_file()


def test_plugin_guide_quotes_the_generated_and_the_tested_code() -> None:
    from botcore.testing.scaffold import MODULE

    guide = (REPO / "docs" / "plugin-guide.md").read_text(encoding="utf-8")
    generated = MODULE.lstrip("\n").replace("@NAME@", "greeter")
    assert generated.strip() in guide
    gatekeeper = (REPO / "tests" / "sample_plugins" / "gatekeeper.py").read_text(encoding="utf-8")
    assert gatekeeper.strip() in guide
    assert "(docs/plugin-guide.md)" in (REPO / "README.md").read_text(encoding="utf-8")


def _plugin_sources() -> list[Path]:
    """The code of every first-party plugin, the built-in one and the examples (not their tests)."""
    found = [*(REPO / "plugins").rglob("*.py"), *(REPO / "examples").rglob("*.py")]
    found.append(REPO / "botcore" / "welcome.py")
    return sorted(p for p in found if "tests" not in p.relative_to(REPO).parts)


def test_plugins_use_only_the_public_api() -> None:
    """A plugin imports from `botcore` only what `botcore.__all__` offers, reaches `app` and
    `turn.app` only through botcore.App's members and never touches the runtime behind them: the
    first-party plugins are written as a third party would write one."""
    import ast

    import botcore
    from botcore.app import App

    public = set(botcore.__all__)
    members = {name for name in dir(App) if not name.startswith("_")}
    wrong: list[str] = []
    for path in _plugin_sources():
        where = path.relative_to(REPO)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "botcore":
                if node.module != "botcore":
                    wrong.append(f"{where}:{node.lineno}: imports from {node.module}")
                else:
                    wrong += [
                        f"{where}:{node.lineno}: botcore.{alias.name} is not public"
                        for alias in node.names
                        if alias.name not in public
                    ]
            elif isinstance(node, ast.Import):
                wrong += [
                    f"{where}:{node.lineno}: imports {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("botcore.")
                ]
            elif isinstance(node, ast.Attribute):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id == "botcore":
                    if node.attr not in public:
                        wrong.append(f"{where}:{node.lineno}: botcore.{node.attr} is not public")
                elif node.attr in ("runtime", "_runtime", "record"):
                    wrong.append(f"{where}:{node.lineno}: reaches botcore's .{node.attr}")
                elif _is_app(owner) and node.attr not in members:
                    wrong.append(f"{where}:{node.lineno}: app.{node.attr} is not API")
    assert not wrong, "\n".join(wrong)
    assert len(_plugin_sources()) > 10  # the walk found the plugins


def _is_app(node: object) -> bool:
    """`app` or `<anything>.app`: the object hooks get, or a turn's."""
    import ast

    return (isinstance(node, ast.Name) and node.id == "app") or (
        isinstance(node, ast.Attribute) and node.attr == "app"
    )


def test_the_core_names_no_plugin() -> None:
    """botcore/ neither imports a first-party plugin nor compares anything with a plugin's name:
    what it does for one plugin it would do for any (the built-ins are one registry)."""
    import ast

    from botcore.plugins import BUILTIN_PLUGINS, available_plugins

    first_party = {ep.module.split(".")[0] for ep in available_plugins().values()}
    names = set(available_plugins()) | set(BUILTIN_PLUGINS)
    wrong: list[str] = []
    for path in sorted((REPO / "botcore").rglob("*.py")):
        if "testing" in path.parts or path.name == "welcome.py":
            continue
        where = path.relative_to(REPO)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                modules.append(getattr(node, "module", None) or "")
                wrong += [
                    f"{where}:{node.lineno}: imports {m}"
                    for m in modules
                    if m.split(".")[0] in first_party - {"botcore"}
                ]
            elif isinstance(node, ast.Compare):
                for side in (node.left, *node.comparators):
                    if isinstance(side, ast.Constant) and side.value in names:
                        wrong.append(f"{where}:{node.lineno}: compares with {side.value!r}")
    assert not wrong, "\n".join(wrong)
    assert {"chat", "welcome"} <= names  # the scan knew what to look for


def test_the_plugin_guide_names_every_public_name() -> None:
    """The guide's one paragraph of what `import botcore` offers lists all of botcore.__all__."""
    import botcore

    guide = (REPO / "docs" / "plugin-guide.md").read_text(encoding="utf-8")
    start = guide.index("Everything a plugin touches comes from `import botcore`")
    paragraph = guide[start : guide.index("\n\n", start)]
    missing = [name for name in botcore.__all__ if f"`{name}`" not in paragraph]
    assert not missing, f"docs/plugin-guide.md does not name: {missing}"
