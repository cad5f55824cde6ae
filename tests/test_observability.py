"""Observability end to end: the log line per update (plain and JSON, from a real `botcore run`),
Prometheus metrics and /healthz over HTTP, and the health check's judgement."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from botcore_metrics import PrometheusMetrics
from prometheus_client.parser import text_string_to_metric_families

from botcore.config import BotSettings
from botcore.logs import JsonFormatter, RedactingFormatter, plain_fields
from botcore.metrics import Health, Metrics
from botcore.testing.fake_openai import ErrorReply, FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness

BOOM = "sample_plugins.boom"
LEAKY = "sample_plugins.leaky"
TESTS = Path(__file__).parent
PAIR = re.compile(r'(\S+?)=("(?:[^"\\]|\\.)*"|\S+)')


async def run_cli_bot(bot_harness: BotHarness, log_format: str) -> list[str]:
    """Run `python -m botcore run` against the fakes, send one message of each outcome, stop it
    with SIGTERM, and return its stderr lines."""
    telegram = bot_harness.telegram
    bot_harness.write_config(
        "bot.toml",
        [BOOM, LEAKY, "chat"],
        bot={"poll_timeout": 5, "log_format": log_format},
        settings={"chat": {"stream": False}},
    )
    pythonpath = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    stderr = bot_harness.workdir / "stderr.log"
    with stderr.open("wb") as err:
        process = await bot_harness.spawn(
            "bot.toml",
            env=bot_harness.env(PYTHONPATH=pythonpath),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
        )
    try:
        assert (await telegram.reply_to("hello model", timeout=30)).text == "echo: hello model"
        await telegram.reply_to("/boom")
        await telegram.reply_to("/oops")
        await telegram.reply_to("/nosuch")
        await telegram.reply_to("/leak")
        await telegram.send_photo(b"\x89PNG fake", user_id=7, language_code="ru")
        await telegram.next_message(7)
        user = {"id": 7, "is_bot": False, "first_name": "T", "language_code": "ru"}
        await telegram.send_update(
            {
                "message": {
                    "message_id": 10_000,
                    "date": 0,
                    "chat": {"id": 7, "type": "private", "first_name": "T"},
                    "from": user,
                    "location": {"latitude": 55.75, "longitude": 37.62},
                }
            }
        )
        await telegram.next_message(7)
        await telegram.send_message("not for me", chat_id=-100, chat_type="group")
        await telegram.reply_to("/boom@botcore_test_bot", chat_id=-100, chat_type="group")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    return stderr.read_text(encoding="utf-8").splitlines()


def assert_no_secrets(lines: list[str], telegram: FakeTelegram, openai: FakeOpenAI) -> None:
    text = "\n".join(lines)
    for secret in (telegram.token, telegram.token.partition(":")[2], openai.api_key):
        assert secret not in text
    assert "the API key is ***" in text and "the token is ***" in text


EXPECTED = [  # (kind, command, plugin, outcome, chat) in the order the messages were sent
    ("text", None, "chat", "answered", 42),
    ("command", "boom", BOOM, "error", 42),
    ("command", "oops", BOOM, "user_error", 42),
    ("command", "nosuch", None, "unknown_command", 42),
    ("command", "leak", LEAKY, "error", 42),
    ("photo", None, "chat", "user_error", 7),  # chat looks at photos: not an image, it says
    ("other", None, None, "unsupported", 7),
    ("text", None, None, "ignored", -100),
    ("command", "boom", BOOM, "error", -100),
]


async def test_json_log_has_one_object_per_line_and_one_line_per_update(
    bot_harness: BotHarness, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    lines = await run_cli_bot(bot_harness, "json")
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= entry.keys() for entry in entries)
    updates = [e for e in entries if e["logger"] == "botcore.updates"]
    got = [(e["kind"], e["command"], e["plugin"], e["outcome"], e["chat_id"]) for e in updates]
    assert got == EXPECTED
    chat, boom = updates[0], updates[1]
    assert chat["user_id"] == 42 and chat["errors"] == [] and chat["ms"] > 0
    assert chat["usage"]["chat.input_tokens"] > 0 and chat["usage"]["chat.output_tokens"] > 0
    assert boom["errors"] == [BOOM] and boom["usage"] == {}
    assert updates[5]["user_id"] == 7
    failure = next(e for e in entries if e["msg"].startswith(f"plugin {BOOM} failed"))
    assert failure["level"] == "ERROR" and "secret internal detail" in failure["exc"]
    assert_no_secrets(lines, telegram, openai_server)


async def test_plain_log_is_key_value(
    bot_harness: BotHarness, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    lines = await run_cli_bot(bot_harness, "plain")
    updates = [dict(PAIR.findall(line)) for line in lines if " botcore.updates: update " in line]
    got = [
        (u["kind"], u.get("command"), u.get("plugin"), u["outcome"], int(u["chat_id"]))
        for u in updates
    ]
    assert got == EXPECTED
    chat = updates[0]
    assert int(chat["usage.chat.input_tokens"]) > 0 and float(chat["ms"]) > 0
    assert "errors" not in chat and updates[1]["errors"] == BOOM
    assert_no_secrets(lines, telegram, openai_server)


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(sample name, labels): value} from the Prometheus text format."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_and_health_over_http(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    running = await start_bot(
        ["metrics", BOOM, "chat"],
        settings={"metrics": {"listen": "127.0.0.1", "port": 0}, "chat": {"model": "gpt-test"}},
    )
    app = running.app
    base = f"http://127.0.0.1:{running.app.metrics.server.port}"
    async with aiohttp.ClientSession() as http:

        async def get(path: str) -> tuple[int, str]:
            async with http.get(base + path) as response:
                return response.status, await response.text()

        status, text = await get("/metrics")
        assert status == 200
        before = scrape(text)
        assert value(before, "botcore_updates_total", kind="text", outcome="answered") == 0
        await telegram.reply_to("hi there", settle=0.3)
        await telegram.reply_to("/boom")
        await telegram.reply_to("/oops")
        openai_server.fail("chat/completions", ErrorReply.rate_limit())
        assert "Too many requests" in ((await telegram.reply_to("again", settle=0.3)).text or "")
        app.metrics.count("budget_rejections", plugin="usage")  # the API the usage plugin calls
        await telegram.wait_for(lambda: running.runtime.health.updates == 4, poll_interval=0.05)
        status, text = await get("/metrics")
        after = scrape(text)
        assert value(after, "botcore_updates_total", kind="text", outcome="answered") == 1
        assert value(after, "botcore_updates_total", kind="command", outcome="error") == 1
        assert value(after, "botcore_updates_total", kind="command", outcome="user_error") == 1
        assert value(after, "botcore_updates_total", kind="text", outcome="model_error") == 1
        assert value(after, "botcore_model_errors_total", plugin="chat", reason="rate_limited") == 1
        assert value(after, "botcore_plugin_errors_total", plugin=BOOM) == 1
        assert value(after, "botcore_plugin_errors_total", plugin="chat") == 0
        assert value(after, "botcore_turn_seconds_count", kind="command") == 2
        assert value(after, "botcore_llm_seconds_count", plugin="chat", model="gpt-test") == 2
        assert value(after, "botcore_llm_seconds_sum", plugin="chat", model="gpt-test") > 0
        assert value(after, "botcore_usage_total", item="chat.input_tokens") > 0
        assert value(after, "botcore_usage_total", item="chat.output_tokens") > 0
        assert value(after, "botcore_budget_rejections_total", plugin="usage") == 1
        assert 0 <= value(after, "botcore_telegram_ok_age_seconds") < 10

        assert await get("/healthz") == (200, "ok")
        async with http.get(base + "/healthz?verbose") as response:
            details = await response.json()
        assert details["status"] == "ok" and details["mode"] == "polling"
        assert details["updates"] == 4 and details["getupdates_ok_age_s"] is not None


async def test_metrics_off_by_default_and_a_no_op(start_bot, telegram: FakeTelegram) -> None:
    running = await start_bot([BOOM])
    assert not running.app.metrics.enabled
    running.app.metrics.count("budget_rejections", plugin="usage")  # plugins may call it anyway
    with running.app.metrics.timed("llm_seconds", plugin="x", model="y"):
        pass
    assert running.app.metrics.exposition() == b""
    assert (await telegram.reply_to("/boom")).text == (
        "Could not process the request, please try again later."
    )


async def test_busy_metrics_port_stops_start_up(bot_harness, start_bot) -> None:
    from botcore.config import StartupError

    running = await start_bot(["metrics"], settings={"metrics": {"port": 0}})
    port = running.app.metrics.server.port
    with pytest.raises(StartupError, match=rf"plugins.metrics: cannot listen on 127.0.0.1:{port}"):
        await start_bot(["metrics"], settings={"metrics": {"port": port}})


async def test_a_plugins_metrics_recorder_records_the_core_and_the_plugins(
    start_bot, telegram: FakeTelegram
) -> None:
    """The metrics_recorder hook: what app.metrics is told reaches the plugin's recorder."""
    running = await start_bot(["sample_plugins.tally", BOOM])
    assert (await telegram.reply_to("/tally")).text == "counted"
    await telegram.reply_to("/boom")
    await telegram.wait_for(lambda: running.runtime.health.updates == 2, poll_interval=0.05)
    tally = running.app.metrics
    assert ("visits", 1, {"plugin": "tally"}) in tally.counts
    assert ("updates", 1, {"kind": "command", "outcome": "answered"}) in tally.counts
    assert ("updates", 1, {"kind": "command", "outcome": "error"}) in tally.counts
    assert ("plugin_errors", 1, {"plugin": BOOM}) in tally.counts
    assert tally.observed == [("turn_seconds", {"kind": "command"})] * 2


def test_bot_metrics_of_old_points_to_the_plugin(tmp_path: Path) -> None:
    """[bot.metrics] enabled = true turned metrics on before they were a plugin: it says where
    they went; a table that left them off (the old shipped bot.toml) still loads."""
    from botcore.config import ConfigError, load_config

    config = tmp_path / "bot.toml"
    config.write_text('[bot]\ntoken = "1:A"\n[bot.metrics]\nenabled = true\nport = 9091\n')
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert str(raised.value) == (
        'bot.metrics: moved to the metrics plugin: add "metrics" to bot.plugins, put listen and '
        "port under [plugins.metrics], and remove [bot.metrics]"
    )
    config.write_text('[bot]\ntoken = "1:A"\n[bot.metrics]\nenabled = false\nport = 9090\n')
    assert load_config(config).bot.metrics is None


def test_botcore_check_leaves_the_port_of_the_running_bot_alone(tmp_path: Path) -> None:
    """Checking a config where the bot runs (its metrics port taken) passes; without
    prometheus-client the check names the extra to install."""
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "bot.toml"
        config.write_text(
            '[bot]\ntoken = "1:A"\nplugins = ["metrics"]\n[store]\nbackend = "memory"\n'
            f"[plugins.metrics]\nport = {port}\n"
        )
        check = [sys.executable, "-m", "botcore.cli", "check", "-c", str(config)]
        done = subprocess.run(check, capture_output=True, text=True, cwd=tmp_path)
        assert (done.returncode, done.stderr) == (0, "")
        code = (  # None in sys.modules: as if prometheus-client were not installed
            "import sys; sys.modules['prometheus_client'] = None; from botcore.cli import main; "
            f"sys.exit(main(['check', '-c', {str(config)!r}]))"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (
        2,
        "botcore: error: plugins.metrics: needs the prometheus_client package, which is not "
        "installed: pip install 'botcore-framework[metrics]'\n",
    )


def test_health_polling_goes_stale_without_getupdates() -> None:
    now = [1000.0]
    settings = BotSettings.model_validate({"token": "1:A", "poll_timeout": 30})
    health = Health(settings, clock=lambda: now[0])
    polled: list[float | None] = [None]
    health.poll_ok = lambda: polled[0]
    assert health.check()[0]  # just started
    now[0] += 89
    assert health.check()[0]
    now[0] += 2
    health.poll_failed("Bad Gateway")
    healthy, details = health.check()
    assert not healthy and details["status"] == "unhealthy"
    assert details["reason"] == "no successful getUpdates for 91 s (last error: Bad Gateway)"
    polled[0] = now[0]
    now[0] += 5
    healthy, details = health.check()
    assert healthy and details["getupdates_ok_age_s"] == 5.0 and details["telegram_ok_age_s"] == 5.0


def test_health_without_poll_tracking_judges_by_errors() -> None:
    """With http_client = "httpx" the transport does not report getUpdates: errors decide."""
    now = [0.0]
    health = Health(BotSettings.model_validate({"token": "1:A"}), clock=lambda: now[0])
    assert health.check()[0]
    now[0] = 10
    health.poll_failed("timed out")
    assert health.check()[1]["reason"] == "getUpdates is failing (last error: timed out)"
    now[0] = 11
    health.saw_update()  # an update arrived after the error: polling works again
    assert health.check()[0]


def test_health_in_webhook_mode_is_the_server_answering() -> None:
    settings = BotSettings.model_validate(
        {"token": "1:A", "mode": "webhook", "webhook": {"url": "https://x.example/tg"}}
    )
    now = [0.0]
    health = Health(settings, clock=lambda: now[0])
    now[0] = 10_000
    assert health.check() == (True, health.check()[1])


def test_a_metric_with_other_labels_is_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = PrometheusMetrics()
    metrics.count("budget_rejections", plugin="usage")
    metrics.count("budget_rejections", user="42")  # other label names: not recorded, no raise
    metrics.count("budget_rejections", user="43")
    metrics.observe("updates", 1.0)  # a counter's name as a histogram: skipped too
    samples = scrape(metrics.exposition().decode())
    assert value(samples, "botcore_budget_rejections_total", plugin="usage") == 1
    warnings = [r for r in caplog.records if "not recorded" in r.getMessage()]
    assert len(warnings) == 2  # once per metric name
    assert Metrics().exposition() == b""


def test_formatters_redact_and_keep_fields() -> None:
    secret = "sk-very-secret-key"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key %s", (secret,), None)
    record.fields = {"chat_id": 1, "text": 'a "quoted" = value', "usage": {"a.b": 2.5}, "no": None}
    plain = RedactingFormatter("%(message)s", [secret]).format(record)
    assert plain == 'key *** chat_id=1 text="a \\"quoted\\" = value" usage.a.b=2.5'
    assert dict(PAIR.findall(plain))["text"] == '"a \\"quoted\\" = value"'
    entry = json.loads(JsonFormatter([secret, 'with"quote']).format(record))
    assert entry["msg"] == "key ***" and entry["usage"] == {"a.b": 2.5} and entry["no"] is None
    record.args = ('with"quote',)  # JSON escapes it as with\"quote: redacted all the same
    assert json.loads(JsonFormatter(['with"quote']).format(record))["msg"] == "key ***"
    assert plain_fields({"errors": ["a", "b"], "empty": [], "n": 3.0}) == "errors=a,b n=3"
