"""Smoke test of the benchmark harness: `python -m bench --quick --runs 1` end to end.

Only that it runs, prints every row and that both bots answered every message (in
telegram-limits only botcore must: the baseline's losses under flood control are a figure there):
speed is never asserted in tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROWS = {
    "cold.first_answer_s",
    "cold.startup_s",
    "cold.last_answer_s",
    "steady.first_answer_s",
    "steady.last_answer_s",
    "overhead.updates_per_s",
    "overhead.cpu_ms_per_message",
    "latency.last_answer_s",
    "latency.answer_p50_s",
    "latency.answer_p99_s",
    "stream.first_text_p50_s",
    "stream.first_text_p99_s",
    "stream.edits_per_answer",
    "stream.drafts_per_answer",
    "stream.cpu_ms_per_message",
    "webhook.last_answer_s",
    "webhook.cpu_ms_per_message",
    "telegram-limits.complete_pct",
    "telegram-limits.violations",
    "telegram-limits.rejections",
    "telegram-limits.last_answer_s",
    "telegram-limits.physical_s",
    "telegram-limits.drain_over_physical",
    "telegram-limits.first_text_p50_s",
    "telegram-limits.first_text_p99_s",
    "telegram-limits.model_request_p50_s",
    "telegram-limits.first_text_after_token_p50_s",
    "telegram-limits.first_text_after_token_p99_s",
    "peak_rss_mb",
    "startup_s",
}


@pytest.mark.timeout(240)
def test_quick_bench_runs_and_both_bots_answer_everything(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    command = [sys.executable, "-m", "bench", "--quick", "--runs", "1", "--json", str(results)]
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so that a timeout can end the fakes and bots with it
    )
    try:
        out, err = proc.communicate(timeout=210)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"python -m bench --quick timed out:\n{err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]

    data = json.loads(results.read_text())
    assert {row["key"] for row in data["rows"]} == ROWS
    for row in data["rows"]:
        assert row["label"] in out
    for bot in ("baseline", "botcore"):
        for preset in ("cold", "steady", "overhead", "latency", "stream"):
            runs = data["runs"][bot][preset]
            assert len(runs) == 1
            assert runs[0]["answered"] == runs[0]["expected"] > 0, (bot, preset)
            assert f"{preset}: answered" in out
    webhook = data["runs"]["botcore"]["webhook"]  # botcore only: the baseline has no webhook
    assert len(webhook) == 1 and webhook[0]["answered"] == webhook[0]["expected"] > 0
    assert "webhook" not in data["runs"]["baseline"]
    # Telegram's flood limits on: botcore answers everything (no final answer is lost to flood
    # control) and the fake's flood counts reach the figures; the baseline ran it too.
    limited = data["runs"]["botcore"]["telegram-limits"]
    assert len(limited) == 1 and limited[0]["answered"] == limited[0]["expected"] > 0
    assert limited[0]["physical_s"] > 0
    # The fake OpenAI's record of when each question reached the model was matched to the chats.
    assert limited[0]["first_text_after_token_p50_s"] is not None
    for bot in ("baseline", "botcore"):
        (run,) = data["runs"][bot]["telegram-limits"]
        assert run["expected"] == 42  # 40 private chats and 2 groups
        assert isinstance(run["violations"], int) and isinstance(run["rejections"], int)
    assert "telegram-limits: answered" in out
