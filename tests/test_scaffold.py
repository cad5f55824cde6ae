"""`botcore new-plugin`: the generated package installs, is found by its entry point, and its tests pass."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest


def botcore(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "botcore", *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.mark.timeout(300)
def test_a_new_plugin_installs_and_passes_its_own_tests(tmp_path: Path) -> None:
    created = botcore("new-plugin", "weather_now", "--dir", "work", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    package = tmp_path / "work" / "botcore-weather_now"
    assert created.stdout.startswith(f"created {Path('work', 'botcore-weather_now')}")

    # It depends on botcore by its PyPI name: plain `botcore` there is another project.
    pyproject = tomllib.loads((package / "pyproject.toml").read_text())
    assert pyproject["project"]["dependencies"] == ["botcore-framework"]

    # A fresh virtualenv that sees this one's packages (botcore, pytest), then an offline
    # `pip install -e` of the package, exactly as its author would, minus the downloads: pip
    # finds the dependency installed under that name, or fails for want of an index.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = sysconfig.get_path("purelib")
    Path(site, "botcore-parent.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    pip = [python, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-index"]
    install = subprocess.run(
        [*pip, "-e", str(package)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr

    # botcore finds it through the entry point the package declares.
    (tmp_path / "bot.toml").write_text('[bot]\ntoken = "1:x"\nplugins = ["weather_now"]\n')
    listed = subprocess.run(
        [python, "-m", "botcore", "plugins"], cwd=tmp_path, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert "weather_now 0.1.0 (entry point from botcore-weather_now)" in listed.stdout
    assert "commands: /weather_now" in listed.stdout

    tests = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=package,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Weather", "use 1-32 lowercase letters, digits and _, starting with a letter"),
        ("my-plugin", "use 1-32 lowercase letters"),
        ("9lives", "use 1-32 lowercase letters"),
        ("x" * 33, "use 1-32 lowercase letters"),
        ("import", "use 1-32 lowercase letters"),
        ("chat", "botcore has a plugin of that name"),
        ("welcome", "botcore has a plugin of that name"),
    ],
)
def test_a_bad_name_is_one_line(tmp_path: Path, name: str, why: str) -> None:
    result = botcore("new-plugin", name, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"botcore: error: bad plugin name {name!r}: {why}")
    assert result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "botcore-weather").mkdir()
    (tmp_path / "botcore-weather" / "mine.txt").write_text("keep")
    result = botcore("new-plugin", "weather", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "botcore: error: botcore-weather already exists\n"
    assert [p.name for p in (tmp_path / "botcore-weather").iterdir()] == ["mine.txt"]
