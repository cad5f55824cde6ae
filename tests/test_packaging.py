"""What a user installs: the sdist and wheel build cleanly, and the wheel alone runs the shipped bot.

The wheel is built from the sdist (as `python -m build` does) and installed, without network,
into a fresh virtualenv beside the locked dependencies from uv's cache, so nothing of this
checkout (an editable install, the source folders) can stand in for what the wheel lacks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = PYPROJECT["project"]["version"]
FIRST_PARTY = PYPROJECT["project"]["entry-points"]["botcore"]  # name -> module botcore_<name>
SHIPPED = {  # every folder under plugins/ -> its module: the plugins and the store backends
    folder.removeprefix("plugins/"): module
    for module, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items()
    if folder.startswith("plugins/")
}
ENV = {"TELEGRAM_BOT_TOKEN": "123456:packaging-test", "OPENAI_API_KEY": "sk-packaging-test"}
# Build output, caches and secrets of a working checkout: none of it may reach a release.
NOT_SOURCE = shutil.ignore_patterns(
    *(".git", ".venv", ".uv", ".env", "build", "dist", "*.egg-info", "__pycache__", "*_cache"),
    *("*.sqlite3*", "*.db"),
)


@dataclass(frozen=True)
class Dist:
    """The built files, the build's output, and a fresh virtualenv with the wheel installed."""

    sdist: Path
    wheel: Path
    log: str
    venv: Path


def uv() -> str:
    """The uv that scripts/setup.sh installed (pinned by hash), else one on PATH."""
    found = REPO / ".uv" / "bin" / "uv"
    if found.exists():
        return str(found)
    on_path = shutil.which("uv")
    if on_path is None:
        pytest.fail("no uv: run scripts/setup.sh test")
    return on_path


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command, fail the test with its output if it fails; its output."""
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{args}:\n{output}"
    return output


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """Build once, from a copy of the source; install into a new virtualenv, offline."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    # Without isolation: the build backend is the locked one in this environment, not a download.
    # Bytecode is allowed so that setuptools has no reason to warn about it being off.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    log = run(
        sys.executable,
        "-m",
        "build",
        "--no-isolation",
        "--outdir",
        tmp / "dist",
        source,
        cwd=tmp,
        env=env,
    )
    [sdist] = (tmp / "dist").glob("*.tar.gz")
    [wheel] = (tmp / "dist").glob("*.whl")

    # The locked dependencies (no test tools, no botcore) from uv's cache, then the wheel alone.
    venv = tmp / "venv"
    uv_env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
    run(
        uv(),
        "sync",
        "--quiet",
        "--frozen",
        "--offline",
        "--no-install-workspace",
        "--python",
        sys.executable,
        cwd=REPO,
        env=uv_env,
    )
    python = venv / "bin" / "python"
    run(
        uv(),
        "pip",
        "install",
        "--quiet",
        "--offline",
        "--no-deps",
        "--python",
        python,
        wheel,
        cwd=tmp,
    )
    # ... and the wheel's own requirements are met by exactly those locked versions.
    run(uv(), "pip", "check", "--offline", "--python", python, cwd=tmp)
    return Dist(sdist, wheel, log, venv)


def test_the_build_is_clean_and_named_for_pypi(dist: Dist) -> None:
    """No warnings (setuptools printed ~55 lines about botcore.locales), and PyPI's name for us."""
    warnings = [line for line in dist.log.splitlines() if "warning" in line.lower()]
    assert warnings == []
    assert dist.sdist.name == f"botcore_framework-{VERSION}.tar.gz"
    assert dist.wheel.name == f"botcore_framework-{VERSION}-py3-none-any.whl"
    with tarfile.open(dist.sdist) as sdist:
        names = {name.partition("/")[2] for name in sdist.getnames()}
    assert {"pyproject.toml", "README.md", "LICENSE", "botcore/py.typed"} <= names


def test_the_wheel_carries_the_core_the_plugins_their_data_and_types(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"botcore_framework-{VERSION}.dist-info/METADATA").decode()
    # Every module and data file of the source, under its installed name: a subpackage missing
    # from [tool.setuptools] packages would be dropped from the wheel without a word.
    expected = {"botcore/py.typed"}
    for path in (REPO / "botcore").rglob("*"):
        if path.suffix in (".py", ".toml") and "__pycache__" not in path.parts:
            expected.add(path.relative_to(REPO).as_posix())
    assert FIRST_PARTY.items() <= SHIPPED.items()
    for name, module in SHIPPED.items():
        for path in (REPO / "plugins" / name).rglob("*.py"):
            expected.add(f"{module}/{path.relative_to(REPO / 'plugins' / name).as_posix()}")
    assert {"botcore/locales/en.toml", "botcore/locales/ru.toml"} <= expected
    assert sorted(expected - names) == []
    # Nothing else at the top level: no "plugins", "tests" or "bench" package.
    tops = {name.split("/")[0] for name in names}
    assert tops == {"botcore", *SHIPPED.values(), f"botcore_framework-{VERSION}.dist-info"}
    assert f"botcore_framework-{VERSION}.dist-info/licenses/LICENSE" in names
    assert "Name: botcore-framework\n" in metadata
    assert "License-Expression: MIT\n" in metadata


def test_the_installed_wheel_checks_and_lists_the_shipped_bot(dist: Dist, tmp_path: Path) -> None:
    """`botcore check` and `botcore plugins` from the wheel alone, on the shipped bot.toml."""
    config = tmp_path / "bot.toml"
    shutil.copyfile(REPO / "bot.toml", config)  # run beside it: its SQLite file lands here
    env = {"PATH": f"{dist.venv / 'bin'}:/usr/bin:/bin", **ENV}
    botcore = dist.venv / "bin" / "botcore"

    # The code runs from the venv's site-packages, not from this checkout.
    where = run(
        dist.venv / "bin" / "python",
        "-c",
        "import botcore, botcore_chat; print(botcore.__file__); print(botcore_chat.__file__)",
        cwd=tmp_path,
        env=env,
    )
    site = Path(
        run(
            dist.venv / "bin" / "python",
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
            cwd=tmp_path,
            env=env,
        ).strip()
    )
    assert where.split() == [
        str(site / "botcore" / "__init__.py"),
        str(site / "botcore_chat" / "__init__.py"),
    ]
    assert site != Path(sysconfig.get_path("purelib"))
    assert (site / "botcore" / "py.typed").is_file()
    assert sorted(p.name for p in (site / "botcore" / "locales").glob("*.toml")) == [
        "en.toml",
        "ru.toml",
    ]

    checked = run(botcore, "check", "--config", config, cwd=tmp_path, env=env)
    enabled = "welcome, access, admin, usage, history, chat, image, voice"
    assert enabled in checked

    listed = run(botcore, "plugins", "--config", config, cwd=tmp_path, env=env)
    # mcp needs the [mcp] extra and the operator's own servers, payments the operator's packages,
    # metrics a port for a scraper: the shipped bot leaves them out.
    for name in FIRST_PARTY.keys() - {"mcp", "payments", "metrics"}:
        assert f"\n{name} {VERSION} (first-party)" in f"\n{listed}"
    assert f"welcome {VERSION} (built-in)" in listed
    for secret in ENV.values():
        assert secret not in checked + listed
