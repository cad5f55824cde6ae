"""The operator's files: deploy/botcore.service passes systemd's checks, .env.example suffices."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "deploy" / "botcore.service"
EXEC = "/opt/botcore/.venv/bin/botcore"  # where the unit's install notes put botcore


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing to say: no unknown key, no bad value."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing: scripts/setup.sh test installs systemd")
        pytest.skip("systemd-analyze is missing (scripts/setup.sh test installs systemd)")
    text = UNIT.read_text(encoding="utf-8")
    # verify insists that ExecStart's program exists: this checkout's botcore stands in for the
    # one the install notes put in /opt/botcore. Nothing else of the unit changes.
    assert text.count(f"ExecStart={EXEC} run --config ") == 1
    unit = tmp_path / "botcore.service"
    unit.write_text(text.replace(EXEC, str(Path(sys.executable).parent / "botcore")))
    verified = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # A misspelled key is only a warning ("Unknown key ..., ignoring") with exit code 0.
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")


def test_env_example_names_every_variable_the_shipped_config_needs(tmp_path: Path) -> None:
    """Copied to .env beside bot.toml, with nothing in the environment, `botcore check` passes."""
    shutil.copyfile(REPO / "bot.toml", tmp_path / "bot.toml")
    shutil.copyfile(REPO / ".env.example", tmp_path / ".env")
    checked = subprocess.run(
        [sys.executable, "-m", "botcore", "check", "--config", "bot.toml"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(
        "ok: 9 plugins (welcome, access, admin, usage, history, chat, image, voice, documents)"
    )
