"""Security end to end: secrets stay out of logs and error messages (at DEBUG too, with either HTTP
stack), the webhook refuses requests without its secret, temporary files are private and removed.

The session-wide scan in tests/conftest.py checks every log record of the whole run as well."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from botcore.testing.fake_openai import FakeOpenAI
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness
from botcore.transport import AiohttpRequest

ECHO = "sample_plugins.echo"
TESTS = Path(__file__).resolve().parent
WEBHOOK_SECRET = "webhook-secret-under-test"  # also in conftest.SECRETS


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
async def test_debug_logging_of_the_real_bot_never_shows_a_secret(
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    bot_harness: BotHarness,
    bot_output: Any,
    http_client: str,
) -> None:
    """`botcore run` at log_level DEBUG: requests, a plugin's traceback, Bot API and OpenAI
    errors all logged, and neither the token nor the key in any line."""
    config = bot_harness.write_config(
        "bot.toml",
        ["history", "chat", "sample_plugins.boom"],
        bot={"poll_timeout": 1, "log_level": "DEBUG", "http_client": http_client},
        store={"path": "h.sqlite3"},
        settings={"chat": {"stream": False}},
    )
    pythonpath = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    bot = await bot_harness.spawn(
        config,
        env=bot_harness.env(PYTHONPATH=pythonpath),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert (await telegram.reply_to("/start", timeout=20)).text.startswith("Hi!")
        assert (await telegram.reply_to("hello", timeout=10)).text == "echo: hello"
        await telegram.reply_to("/boom", timeout=10)  # a plugin traceback
        openai_server.fail("chat/completions", _unauthorized())  # the key is refused
        await telegram.reply_to("a question", timeout=10)
        telegram.fail("sendMessage", status=502, description="Bad Gateway")  # Bot API error
        telegram.fail("sendMessage", disconnect=True)
        assert (await telegram.reply_to("again", timeout=10)).text == "echo: again"
    finally:
        if bot.returncode is None:
            bot.send_signal(signal.SIGTERM)
        output = (await bot.communicate())[0].decode()
    bot_output(output)
    assert " DEBUG " in output and "plugin sample_plugins.boom failed in /boom" in output
    for secret in (telegram.token, telegram.token.partition(":")[2], openai_server.api_key):
        assert secret not in output


def _unauthorized() -> Any:
    from botcore.testing.fake_openai import ErrorReply

    return ErrorReply(401, "Incorrect API key provided: sk-test-key.", "invalid_request_error")


async def test_network_errors_from_the_transport_do_not_carry_the_url() -> None:
    """aiohttp puts the URL (with the token) in some errors; the NetworkError keeps it out."""
    request = AiohttpRequest()
    await request.initialize()
    url = "http://[bad-host/bot123456:TEST-TOKEN/getMe"  # invalid: aiohttp echoes it back
    try:
        with pytest.raises(Exception) as info:
            await request.do_request(url, "POST")
    finally:
        await request.shutdown()
    assert "TEST-TOKEN" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_webhook_accepts_only_its_secret(start_bot, telegram: FakeTelegram) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    running = await start_bot(
        [ECHO],
        bot={
            "mode": "webhook",
            "webhook": {
                "url": url,
                "listen": "127.0.0.1",
                "port": port,
                "path": "/hook",
                "secret_token": WEBHOOK_SECRET,
            },
        },
    )
    assert telegram.webhook is not None and telegram.webhook["secret_token"] == WEBHOOK_SECRET
    assert WEBHOOK_SECRET in running.runtime.config.secrets()  # redacted from every log line

    def update(update_id: int, chat_id: int) -> dict[str, Any]:
        message = {"message_id": 1, "date": 0, "chat": {"id": chat_id, "type": "private"}}
        return {"update_id": update_id, "message": {**message, "text": "forged"}}

    header = "X-Telegram-Bot-Api-Secret-Token"
    async with aiohttp.ClientSession() as session:
        for number, headers in enumerate(
            [
                {},
                {header: ""},
                {header: WEBHOOK_SECRET[:-1]},
                {header: WEBHOOK_SECRET + "x"},
                {header: WEBHOOK_SECRET.upper()},
                {header.lower() + "-x": WEBHOOK_SECRET},
            ]
        ):
            async with session.post(url, json=update(900 + number, 5), headers=headers) as r:
                assert r.status == 403, headers
                assert WEBHOOK_SECRET not in await r.text()
        async with session.get(url, headers={header: WEBHOOK_SECRET}) as r:
            assert r.status == 405
        async with session.post(
            f"http://127.0.0.1:{port}/other", json=update(950, 5), headers={header: WEBHOOK_SECRET}
        ) as r:
            assert r.status == 404
        async with session.post(url, data=b"{not json", headers={header: WEBHOOK_SECRET}) as r:
            assert r.status == 400
        # The right secret is what lets an update in (this one comes from "Telegram").
        async with session.post(url, json=update(999, 6), headers={header: WEBHOOK_SECRET}) as r:
            assert r.status == 200
    assert (await telegram.next_message(6)).text == "echo: forged"
    await asyncio.sleep(0.2)
    assert telegram.bot_messages(5) == []


async def test_voice_temporary_files_are_private_and_removed(
    start_bot,
    telegram: FakeTelegram,
    openai_server: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from botcore.testing.fake_openai import sample_audio

    made: list[tuple[Path, int]] = []
    files: list[int] = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        path = real_mkdtemp(*args, **kwargs)
        made.append((Path(path), stat.S_IMODE(os.stat(path).st_mode)))
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    real_transcribe = openai_server._transcriptions_route

    async def peek(request: Any, rec: Any) -> Any:  # while the bot waits, look at its files
        for folder, _ in made:
            files.extend(stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir())
        return await real_transcribe(request, rec)

    openai_server._routes[("POST", "/v1/audio/transcriptions")] = peek
    await start_bot(["voice"])
    data, mime = sample_audio("opus")
    await telegram.send_voice(data, mime_type=mime)
    assert (await telegram.next_message(42)).text.startswith("🎤")
    assert made, "the voice plugin made no temporary folder"
    for folder, mode in made:
        assert mode == 0o700, oct(mode)  # nobody else can list or read what is inside
        assert not folder.exists()  # and it is gone once the turn is over
    assert files, "no temporary file was seen while transcribing"


async def test_the_sqlite_store_is_private_to_the_bot_user(
    start_bot, telegram: FakeTelegram, tmp_path: Path
) -> None:
    """The database holds every conversation: it, its -wal and -shm, and the folder made for
    them are the bot user's alone, even under the usual umask 022."""
    folder = tmp_path / "data"
    db_path = folder / "bot.sqlite3"
    old = os.umask(0o022)
    try:
        await start_bot(["history", "chat"], store={"path": str(db_path)})
        await telegram.reply_to("remember me")
    finally:
        os.umask(old)
    modes = {
        path.name: stat.S_IMODE(path.stat().st_mode)
        for path in (
            db_path,
            db_path.with_name("bot.sqlite3-wal"),
            db_path.with_name("bot.sqlite3-shm"),
        )
    }
    assert modes == dict.fromkeys(modes, 0o600), {k: oct(v) for k, v in modes.items()}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


async def test_oversized_files_are_refused_before_any_download(
    start_bot, telegram: FakeTelegram
) -> None:
    """file_size above the Bot API's limit: not even getFile is called (for any plugin's
    turn.download, not only voice's: tested through the core helper)."""
    running = await start_bot([ECHO])
    from botcore.turn import Turn
    from botcore.types import UserError

    message = await telegram.send_message("x")
    await telegram.next_message(42)
    turn = Turn(running.runtime, 1, _ptb_message(running, message), "document", None, "en")
    with pytest.raises(UserError, match="too big"):
        await turn.download("FAKE-document-000001", size=30 * 1024 * 1024)
    assert telegram.calls("getFile") == []


def _ptb_message(running: Any, raw: dict[str, Any]) -> Any:
    from telegram import Message

    return Message.de_json(raw, running.runtime.telegram)


async def test_a_button_press_is_answered_and_its_data_reaches_no_code(
    start_bot, telegram: FakeTelegram, openai_server: FakeOpenAI
) -> None:
    """No plugin offers buttons: a press (with any forged data) is answered as out of date."""
    await start_bot(["history", "chat"])
    welcome = await telegram.reply_to("/start")
    requests_before = len(openai_server.requests)
    await telegram.send_callback_query(welcome, data="admin:disable:chat", language_code="ru")
    await telegram.wait_for(lambda: len(telegram.callback_answers) == 1)
    assert telegram.callback_answers[0]["text"] == "Эта кнопка больше не работает."
    assert len(openai_server.requests) == requests_before
    assert (await telegram.reply_to("still here?")).text == "echo: still here?"


async def test_a_debug_log_never_shows_what_users_write(
    telegram: FakeTelegram, bot_harness: BotHarness, bot_output: Any
) -> None:
    """`botcore run` at DEBUG: python-telegram-bot logs every update it processes, and used to
    print the whole Update, the user's text with it ("Processing update Update(... text=...)")."""
    config = bot_harness.write_config(
        "bot.toml", [ECHO], bot={"poll_timeout": 1, "log_level": "DEBUG"}
    )
    pythonpath = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    bot = await bot_harness.spawn(
        config,
        env=bot_harness.env(PYTHONPATH=pythonpath),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    private = "my diary entry 7731"
    try:
        assert (await telegram.reply_to(private, timeout=20)).text == f"echo: {private}"
    finally:
        if bot.returncode is None:
            bot.send_signal(signal.SIGTERM)
        output = (await bot.communicate())[0].decode()
    bot_output(output)
    assert "diary" not in output, output
    assert "Processing update Update " in output  # the line is there, without the update


LOGS_THE_TOKEN = """
import logging

from botcore.testing.fake_telegram import FakeTelegram


async def test_logs_the_token(telegram: FakeTelegram) -> None:
    logging.getLogger("botcore.somewhere").warning("GET %s%s/getMe", telegram.base_url, telegram.token)


def test_logs_nothing() -> None:
    pass
"""


@pytest.mark.parametrize("workers", ["0", "2"])
def test_the_session_scan_fails_a_run_whose_log_shows_the_token(
    pytester: pytest.Pytester, workers: str
) -> None:
    """This suite's conftest on a throwaway suite: the run fails, also under pytest-xdist (-n 2),
    where the worker that saw the record is not the process that reports."""
    pytester.makeconftest((TESTS / "conftest.py").read_text(encoding="utf-8"))
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    pytester.makepyfile(test_it=LOGS_THE_TOKEN)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", workers)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*SECRET LEAK: the bot token or an API key reached a log line*"])
