"""Run the presets against the baseline PTB bot and botcore, each a separate pinned process.

For every run of every preset, both fakes and the bot under test are started afresh: the bot on
one core, the fakes (and this driver) on the other. The burst is pushed once the bot polls (in
"cold", before the bot is spawned, so that its first getUpdates returns it); the times come from
the fake Telegram's records (``time.monotonic()``, the same clock in every process), the CPU
and peak RSS from /proc/<pid>.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import ctypes
import json
import math
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.presets import BOT_USERNAME, PRESETS, QUICK, ROWS, Preset, Row, physical_limit
from botcore.testing.toml_writer import to_toml

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "latest.json"
TOKEN = "123456:BENCH-TOKEN"
OPENAI_KEY = "sk-bench-key"
BOTS = ("baseline", "botcore")
SETTLE = 0.5
"""Seconds of quiet after the warm-up answer and after the last answer of the burst."""
STALL = 10.0
"""Seconds without a new answer after which the missing ones are taken as lost."""
WARMUP_WAIT = 60.0
"""Seconds the warm-up answer may take (first-use imports are slow on a loaded machine)."""
MISSING_SHOWN = 20
"""Chats listed when answers are missing (a flood-banned bot may miss hundreds)."""
WARMUP = {"text": "Warm-up question", "user_id": 999}
"""Answered before the burst, outside the figures: first-use costs (lazy imports, connections)."""

Metrics = dict[str, float]


# --------------------------------------------------------------------------- processes


def pinning() -> tuple[set[int] | None, set[int] | None]:
    """(bot cores, fakes cores): the last usable core for the bot, the others for the rest."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return None, None
    return {usable[-1]}, set(usable[:-1])


def _child_setup(cpus: set[int] | None) -> Callable[[], None]:
    """Pin the child to ``cpus`` and have it killed if the driver dies."""

    def setup() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return setup


def spawn(
    cmd: list[str], cpus: set[int] | None, log: Path, *, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a process pinned to ``cpus``: stdout piped (the fakes print their URL), stderr to log."""
    with log.open("ab") as err:
        return subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=log.parent,
            env={**os.environ, **(env or {})},
            preexec_fn=_child_setup(cpus),
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def start_fake(
    module: str, args: list[str], cpus: set[int] | None, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a fake server on a free port; returns it and its root URL (from its first line)."""
    proc = spawn([sys.executable, "-m", module, "--port", "0", *args], cpus, log)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().decode() if ready else ""
    found = re.search(r"http://[\w.]+:\d+", line)
    if not found:
        stop(proc)
        raise RuntimeError(f"{module} did not start:\n{tail(log)}")
    return proc, found.group(0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """VmHWM (the peak resident set) from /proc/<pid>/status, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def tail(log: Path, lines: int = 20) -> str:
    """The end of a log file, for error messages."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def control(url: str, action: str, body: Any = None) -> Any:
    """Call the fake Telegram's out-of-process control API (``POST /_fake/<action>``)."""
    request = urllib.request.Request(
        f"{url}/_fake/{action}",
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["result"]


# --------------------------------------------------------------------------- one run


def botcore_config(
    workdir: Path, telegram: str, openai: str, mode: str = "polling", limits: bool = False
) -> Path:
    """The default bot.toml, pointed at the fakes, with the history in ``workdir``; in webhook
    mode listening on a free loopback port; ``limits`` keeps [bot.limits] as it is (on)."""
    config = tomllib.loads((REPO / "bot.toml").read_text())
    config["bot"].update(base_url=f"{telegram}/bot", base_file_url=f"{telegram}/file/bot")
    if not limits:
        # The fakes run without Telegram's flood limits and the baseline keeps none, so botcore's
        # scheduler is switched off too: these presets measure the framework, not Telegram's 30/s.
        config["bot"]["limits"] = {**config["bot"].get("limits", {}), "enabled": False}
    if mode == "webhook":
        port = free_port()
        config["bot"]["mode"] = "webhook"
        config["bot"]["webhook"].update(
            url=f"http://127.0.0.1:{port}/telegram", listen="127.0.0.1", port=port
        )
    config["openai"]["base_url"] = f"{openai}/v1"
    config["store"]["path"] = str(workdir / "botcore.sqlite3")
    path = workdir / "bot.toml"
    path.write_text(to_toml(config))
    return path


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bot_command(bot: str, preset: Preset, workdir: Path, telegram: str, openai: str) -> list[str]:
    """The command line of the bot under test."""
    if bot == "baseline":
        return [sys.executable, str(REPO / "bench" / "baseline_ptb.py"), *preset.baseline_args]
    config = botcore_config(workdir, telegram, openai, preset.mode, preset.limits)
    return [sys.executable, "-m", "botcore", "run", "--config", str(config)]


def bot_env(telegram: str, openai: str) -> dict[str, str]:
    """Endpoints and secrets for both bots (botcore reads the secrets through bot.toml's ${…})."""
    return {
        "BENCH_TELEGRAM_URL": f"{telegram}/bot",
        "BENCH_TELEGRAM_TOKEN": TOKEN,
        "BENCH_OPENAI_URL": f"{openai}/v1",
        "BENCH_OPENAI_KEY": OPENAI_KEY,
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "OPENAI_API_KEY": OPENAI_KEY,
    }


def burst(preset: Preset) -> list[dict[str, Any]]:
    """The messages of the burst, round-robin over the users (one private chat each), then one
    question in each group, addressed to the bot (botcore answers only those in groups)."""
    private = [
        {"text": f"Question {i} from user {i % preset.users}", "user_id": 1000 + i % preset.users}
        for i in range(preset.messages)
    ]
    groups = [
        {
            "text": f"@{BOT_USERNAME} Question from group {g}",
            "user_id": 5000 + g,
            "chat_id": -1_000_000 - g,
            "chat_type": "group",
        }
        for g in range(preset.groups)
    ]
    return private + groups


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``check`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def wait_answers(telegram: str, preset: Preset, count: int, stall: float = STALL) -> bool:
    """Wait for ``count`` answers; give up after ``preset.timeout`` or ``stall`` s without a new
    one."""
    deadline = time.monotonic() + preset.timeout
    seen, since = -1, time.monotonic()
    while (now := time.monotonic()) < deadline and now - since < stall:
        found = control(telegram, "chats", {"text": preset.answer, "detail": False})["answers"]
        if found >= count:
            return True
        if found != seen:
            seen, since = found, now
        time.sleep(0.1)
    return False


def measure(preset: Preset, bot: str, cores: tuple[set[int] | None, set[int] | None]) -> Metrics:
    """One run: fresh fakes and bot, the messages (waiting before the spawn in "cold", a burst
    once the bot polls otherwise), every answer; the metrics of every preset."""
    bot_cpus, fake_cpus = cores
    cold, warm = preset.start == "cold", preset.start == "warm"
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        log = workdir / "bot.log"
        tg_args = ["--token", TOKEN, "--bot-username", BOT_USERNAME]
        if preset.limits:
            tg_args += ["--limits", "telegram"]
        tg, telegram = start_fake(
            "botcore.testing.fake_telegram", tg_args, fake_cpus, workdir / "tg.log"
        )
        stack.callback(stop, tg)
        openai_args = ["--api-key", OPENAI_KEY, "--text", preset.answer, *preset.openai_args]
        if preset.limits:  # when each question reached the model: first text after first token
            openai_args.append("--record")
        oa, openai = start_fake(
            "botcore.testing.fake_openai", openai_args, fake_cpus, workdir / "oa.log"
        )
        stack.callback(stop, oa)

        def fakes_cpu() -> float:
            return cpu_seconds(tg.pid) + cpu_seconds(oa.pid)

        if cold:  # the backlog a restarted bot finds: its first getUpdates returns it
            control(telegram, "send_messages", {"messages": burst(preset)})
        command = bot_command(bot, preset, workdir, telegram, openai)
        fakes0 = fakes_cpu()
        spawned = time.monotonic()
        proc = spawn(command, bot_cpus, log, env=bot_env(telegram, openai))
        stack.callback(stop, proc)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{bot} exited with {proc.returncode}:\n{tail(log)}")
            return ready_time(control(telegram, "chats", {"detail": False})) is not None

        if not wait_until(ready, 60):
            raise RuntimeError(f"{bot} did not take updates within 60 s:\n{tail(log)}")
        if warm:
            control(telegram, "send_messages", {"messages": [WARMUP]})
            if not wait_answers(telegram, preset, 1, stall=WARMUP_WAIT):  # lazy imports: slow
                raise RuntimeError(f"{bot} did not answer the warm-up message:\n{tail(log)}")
            time.sleep(SETTLE)
        elif not cold:  # steady: idle, then the first messages it ever gets
            time.sleep(preset.idle)
        if preset.limits:  # the warm-up's 429s are no part of the figures
            flood0 = control(telegram, "flood")
        if cold:
            origin, cpu0 = spawned, 0.0
        else:
            cpu0, fakes0 = cpu_seconds(proc.pid), fakes_cpu()
            origin = control(telegram, "send_messages", {"messages": burst(preset)})["time"]
        wait_answers(telegram, preset, (1 if warm else 0) + preset.expected)
        time.sleep(SETTLE)
        cpu, fakes = cpu_seconds(proc.pid) - cpu0, fakes_cpu() - fakes0
        rss = peak_rss_mb(proc.pid)
        summary = control(telegram, "chats", {"text": preset.answer})
        asked = model_requests(preset, control(openai, "chat_times")) if preset.limits else {}
        result = metrics(preset, summary, origin, spawned, cpu, fakes, rss, asked)
        if preset.limits:
            flood = control(telegram, "flood")
            result["violations"] = flood["violations"] - flood0["violations"]
            result["rejections"] = flood["rejections"] - flood0["rejections"]
        if result["answered"] < preset.expected:
            report_missing(preset, bot, summary, log)
    return result


def model_requests(preset: Preset, times: list[dict[str, Any]]) -> dict[str, float]:
    """When each chat's question of the burst reached the model, by chat id (as in the fake
    Telegram's summary), from the fake OpenAI's record (the question is in the last user
    message; the bot may add to it, e.g. a member's name in groups)."""
    questions = {m["text"]: str(m.get("chat_id", m["user_id"])) for m in burst(preset)}
    asked: dict[str, float] = {}
    for request in times:
        for question, chat in questions.items():
            if question in request["text"]:
                asked.setdefault(chat, request["time"])
                break
    return asked


def ready_time(summary: dict[str, Any]) -> float | None:
    """When the bot began taking updates: its first getUpdates, or its setWebhook."""
    found = summary["first_get_updates"] or summary.get("first_set_webhook")
    return float(found) if found is not None else None


def report_missing(preset: Preset, bot: str, summary: dict[str, Any], log: Path) -> None:
    """Print which chats lack answers and what they got instead; keep the bot's log."""
    per_user = preset.messages // preset.users  # burst() spreads messages evenly; 1 a group
    kept = RESULTS.parent / f"{preset.name}-{bot}-missing.log"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(log.read_bytes())
    print(f"{bot} missed answers in {preset.name}; its log: {kept}", file=sys.stderr)
    short = [
        (chat, row)
        for chat, row in summary["chats"].items()
        if row["answers"] < per_user and chat != str(WARMUP["user_id"])
    ]
    for chat, row in short[:MISSING_SHOWN]:
        print(f"  chat {chat}: {row['answers']}/{per_user}, also {row['others']}", file=sys.stderr)
    if len(short) > MISSING_SHOWN:
        print(f"  ... and {len(short) - MISSING_SHOWN} more chats", file=sys.stderr)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def metrics(
    preset: Preset,
    summary: dict[str, Any],
    origin: float,
    spawned: float,
    cpu: float,
    fakes_cpu: float,
    rss: float,
    asked: dict[str, float] | None = None,
) -> Metrics:
    """Turn the fake's per-chat records into the table's figures, times from ``origin``: the
    burst, or in "cold" the spawn (the messages were waiting before it).

    A run that missed answers keeps its counts, CPU, RSS and start-up, but no other figures.
    First text is measured in private chats (in groups botcore shows no draft: the first text
    waits for the group's slower edit rhythm); with ``asked`` (when each chat's question reached
    the model) also from the model's first token in that chat: what the bot adds to the model.
    """
    warmup = summary["chats"].pop(str(WARMUP["user_id"]), {"answers": 0})
    count = summary["answers"] - warmup["answers"]
    complete = count >= preset.expected
    chats = list(summary["chats"].values()) if complete else []
    private = {chat: c for chat, c in summary["chats"].items() if int(chat) > 0 and complete}
    asked = asked or {}
    after_token = [
        c["first_text"] - asked[chat] - preset.first_token
        for chat, c in private.items()
        if c["first_text"] is not None and chat in asked
    ]
    to_model = [asked[chat] - origin for chat in private if chat in asked]
    answered = [c["last_write"] - origin for c in chats]
    first = [c["first_send"] - origin for c in chats if c["first_send"] is not None]
    seen = [c["first_text"] - origin for c in private.values() if c["first_text"] is not None]
    window = max(answered, default=math.nan)
    physical = physical_limit(preset) if preset.limits else math.nan
    return {
        "expected": preset.expected,
        "answered": count,
        "complete_pct": 100 * count / preset.expected,
        "violations": math.nan,  # from the fake's flood counts, where limits are on
        "rejections": math.nan,
        "physical_s": physical,
        "drain_over_physical": window / physical,
        "model_request_p50_s": percentile(to_model, 50),
        "first_text_after_token_p50_s": percentile(after_token, 50),
        "first_text_after_token_p99_s": percentile(after_token, 99),
        "updates_per_s": preset.expected / window,
        "cpu_ms_per_message": cpu * 1000 / preset.expected if chats else math.nan,
        "last_answer_s": window,
        "answer_p50_s": percentile(answered, 50),
        "answer_p99_s": percentile(answered, 99),
        "first_text_p50_s": percentile(seen, 50),  # a draft is visible text too
        "first_text_p99_s": percentile(seen, 99),
        "first_answer_s": min(first, default=math.nan),
        "edits_per_answer": sum(c["edits"] for c in chats) / count if chats else math.nan,
        "drafts_per_answer": sum(c["drafts"] for c in chats) / count if chats else math.nan,
        "cpu_s": cpu,
        "fakes_cpu_s": fakes_cpu,
        "fakes_busy": fakes_cpu / window,
        "peak_rss_mb": rss,
        "startup_s": (ready_time(summary) or math.nan) - spawned,
    }


# --------------------------------------------------------------------------- results


def median(runs: list[Metrics], key: str) -> float:
    """The median of one metric over runs, ignoring NaN."""
    values = [r[key] for r in runs if not math.isnan(r[key])]
    return statistics.median(values) if values else math.nan


def row_value(row: Row, runs: dict[str, list[Metrics]]) -> float:
    """A row's figure for one bot: the preset's median, or over all presets for shared rows."""
    if row.preset:
        return median(runs.get(row.preset, []), row.metric)
    if row.metric == "peak_rss_mb":
        return max((median(r, row.metric) for r in runs.values()), default=math.nan)
    return median([m for r in runs.values() for m in r], row.metric)


def meets(row: Row, value: float, ratio: float) -> bool | None:
    """Whether a figure meets the row's target; None when there is no target or no figure."""
    if not row.target:
        return None
    op, _, limit = row.target.partition(" ")
    figure = ratio if limit.endswith("x") else value
    if math.isnan(figure):
        return None
    bound = float(limit.removesuffix("x"))
    return figure >= bound if op == "≥" else figure <= bound


def fmt(value: float) -> str:
    """Three significant figures, whole numbers from 1000."""
    if math.isnan(value):
        return "n/a"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def build_rows(results: dict[str, dict[str, list[Metrics]]]) -> list[dict[str, Any]]:
    """The table as data: one dict per row, with both bots' medians, the ratio and the target."""
    table = []
    for row in ROWS:
        if row.versus:  # botcore against itself in another preset
            base = row_value(Row(row.versus, row.metric, "", row.better), results["botcore"])
            ours = row_value(row, results["botcore"])
        else:
            base, ours = (row_value(row, results[bot]) for bot in BOTS)
        ratio = ours / base if base else math.nan
        table.append(
            {
                "key": row.key,
                "label": row.label,
                "better": row.better,
                "baseline": base,
                "botcore": ours,
                "ratio": ratio,
                "target": row.target,
                "met": meets(row, ours, ratio),
            }
        )
    return table


def render(table: list[dict[str, Any]], results: dict[str, dict[str, list[Metrics]]]) -> str:
    """The printed table: the rows, then per preset the answers counted and the fakes' CPU."""
    lines = [["metric", "better", "baseline", "botcore", "ratio", "target", "met"]]
    for r in table:
        met = {None: "", True: "yes", False: "NO"}[r["met"]]
        figures = [fmt(r["baseline"]), fmt(r["botcore"]), fmt(r["ratio"])]
        lines.append([r["label"], r["better"], *figures, r["target"], met])
    for preset in results["botcore"]:
        runs = [results[bot].get(preset, []) for bot in BOTS]
        answered = [
            f"{sum(m['answered'] for m in r):.0f}/{sum(m['expected'] for m in r):.0f}" if r else "-"
            for r in runs
        ]
        fakes = [
            f"{fmt(median(r, 'fakes_cpu_s'))} ({median(r, 'fakes_busy'):.0%})" if r else "-"
            for r in runs
        ]
        lines.append([f"{preset}: answered (all runs)", "", *answered, "", "", ""])
        lines.append([f"{preset}: fakes CPU s (% of a core)", "", *fakes, "", "", ""])
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(lines[0]))]
    out = [
        "  ".join(
            [c[0].ljust(widths[0]), *(x.rjust(w) for x, w in zip(c[1:], widths[1:], strict=True))]
        )
        for c in lines
    ]
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def run_all(
    presets: tuple[Preset, ...],
    runs: int,
    cores: tuple[set[int] | None, set[int] | None],
    bots: tuple[str, ...] = BOTS,
) -> Iterator[tuple[str, str, int, Metrics]]:
    """Every (preset, bot) ``runs`` times, interleaved so that drift hits both bots alike."""
    if cores[1]:
        os.sched_setaffinity(0, cores[1])
    for run in range(runs):
        for preset in presets:
            for bot in (b for b in preset.bots if b in bots):
                yield preset.name, bot, run, measure(preset, bot, cores)


def byte_compile() -> None:
    """Byte-compile botcore and its plugins, as installing a package does: no start in the
    figures compiles them (with PYTHONDONTWRITEBYTECODE set, every start would)."""
    for folder in ("botcore", "plugins"):
        compileall.compile_dir(REPO / folder, quiet=1)


def _json_safe(value: Any) -> Any:
    """NaN (a figure that could not be measured) becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


REPORTS = {
    "tools": "bench.tools_overhead",
    "mcp": "bench.mcp_overhead",
}
"""botcore-only reports (no baseline has tools), run after the presets: a turn's CPU with 20 tools
offered against none, and an MCP tool's round trip (stdio, HTTP) against a plugin tool's."""


def report(name: str) -> str:
    """Run one of REPORTS in its own process; print its output and return it for the JSON."""
    print(f"\n{name}: python -m {REPORTS[name]}", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", REPORTS[name]], capture_output=True, text=True, check=False
    )
    out = done.stdout + (f"(exit {done.returncode})\n{done.stderr}" if done.returncode else "")
    print(out, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m bench``: run, print the table, write the JSON; exit 1 if an answer is missing."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--runs", type=int, default=3, help="runs per preset and bot (median)")
    parser.add_argument("--preset", action="append", help="only this preset (repeatable)")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the results")
    parser.add_argument("--bot", choices=BOTS, action="append", help="only this bot (repeatable)")
    args = parser.parse_args(argv)
    unknown = set(args.preset or ()) - {p.name for p in PRESETS} - set(REPORTS)
    if unknown:
        parser.error(f"no preset {', '.join(sorted(unknown))}")
    presets = tuple(
        p for p in (QUICK if args.quick else PRESETS) if p.name in (args.preset or [p.name])
    )
    reports = [r for r in REPORTS if not args.quick and r in (args.preset or REPORTS)]
    cores = pinning()
    byte_compile()
    results: dict[str, dict[str, list[Metrics]]] = {bot: {} for bot in BOTS}
    try:
        bots = tuple(args.bot or BOTS)
        for preset, bot, run, m in run_all(presets, args.runs, cores, bots):
            results[bot].setdefault(preset, []).append(m)
            print(
                f"{preset} run {run + 1}/{args.runs} {bot}: {m['answered']:.0f}/"
                f"{m['expected']:.0f} answered, last {m['last_answer_s']:.2f} s, "
                f"CPU {m['cpu_s']:.2f} s, fakes CPU {m['fakes_cpu_s']:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    except RuntimeError as exc:  # a bot or a fake that does not start: nothing to compare
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    table = build_rows(results)
    if presets:  # not for the reports alone: a table of n/a
        print(render(table, results))
    reported = {name: report(name) for name in reports}
    meta = {
        "quick": args.quick,
        "runs": args.runs,
        "bot_cpus": sorted(cores[0] or []),
        "fakes_cpus": sorted(cores[1] or []),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "rows": table, "runs": results, "reports": reported}
    args.json.write_text(json.dumps(_json_safe(data), indent=1, ensure_ascii=False))
    print(f"results: {args.json}")
    lossy = {p.name for p in presets if p.limits}  # there the baseline's losses are a figure
    every = [
        m
        for bot, per_bot in results.items()
        for preset, ms in per_bot.items()
        for m in ms
        if bot == "botcore" or preset not in lossy
    ]
    return 0 if all(m["answered"] >= m["expected"] for m in every) else 1
