"""`botcore console` as a user runs it: a subprocess reading stdin, the model being the fake OpenAI."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from botcore.testing.fake_openai import ChatReply, FakeOpenAI, ImageReply, sample_audio
from botcore.testing.harness import BotHarness

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


def write_config(
    bot_harness: BotHarness, plugins: Sequence[str] = ("history", "chat", "image")
) -> Path:
    """A bot.toml like an author's: the token variable is unset (see `environment`), the model
    is the fake."""
    return bot_harness.write_config(
        "bot.toml",
        plugins,
        bot={"stream_edit_interval": 0.1},
        store={"path": "history.sqlite3"},
    )


def environment(bot_harness: BotHarness) -> dict[str, str]:
    """The console's environment: the fake's API key, and no bot token at all."""
    env = bot_harness.env(PYTHONUNBUFFERED="1")
    del env["TELEGRAM_BOT_TOKEN"]
    return env


async def console(bot_harness: BotHarness, lines: list[str], *args: str) -> tuple[int, str, str]:
    """Run `botcore console` piped: all lines on stdin, then EOF; (exit code, stdout, stderr)."""
    process = await bot_harness.spawn(
        "bot.toml",
        *args,
        command="console",
        env=environment(bot_harness),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdin = "".join(line + "\n" for line in lines).encode()
    out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_console_chats_through_the_real_plugins(
    openai_server: FakeOpenAI, bot_harness: BotHarness, tmp_path: Path
) -> None:
    write_config(bot_harness)
    openai_server.script_chat(
        "Nice to meet you, Ann.",
        ChatReply(text="Your name is Ann, as you said.", chunk_delay=0.05),
        "I don't know your name.",
    )
    openai_server.script_image(ImageReply(b64_png=PNG))
    code, out, err = await console(
        bot_harness,
        [
            "/start",
            "My name is Ann",
            "What is my name?",
            "/image a red square",
            "/clear",
            "What is my name?",
        ],
    )
    assert code == 0, err
    assert "bot> Hi! I'm a bot built on botcore." in out
    assert "/image — Draw a picture" in out
    assert "you> My name is Ann\nbot> Nice to meet you, Ann.\n" in out
    # The streamed answer is printed whole, once; the model saw the conversation so far.
    assert out.count("Your name is Ann, as you said.") == 1
    assert "you> /clear\nbot> Done: I have forgotten our conversation.\n" in out
    assert out.rstrip().endswith("bot> I don't know your name.")
    seen = [m["content"] for m in openai_server.chat_requests[1]["messages"]]
    assert "My name is Ann" in seen and "Nice to meet you, Ann." in seen
    after_clear = [m["content"] for m in openai_server.last_chat_messages()]
    assert "My name is Ann" not in after_clear
    # The photo is saved to a file, and its path printed with the caption.
    photo_line = next(line for line in out.splitlines() if line.startswith("bot> [photo "))
    saved = photo_line.removeprefix("bot> [photo ").partition("]")
    assert saved[2] == " a red square"
    assert saved[0].startswith("botcore-console/")
    assert (tmp_path / saved[0]).read_bytes() == PNG


async def test_console_shows_inline_buttons_and_presses_them(
    openai_server: FakeOpenAI, bot_harness: BotHarness
) -> None:
    """/chats answers with a button per conversation: the console numbers them, /press N
    presses one as the user would, and a spent keyboard's notice is shown."""
    write_config(bot_harness)
    openai_server.script_chat("Paris.", "Blue.", "Lyon is second.")
    code, out, err = await console(
        bot_harness,
        [
            "Capital of France?",
            "/new",
            "Colour of the sky?",
            "/chats",
            "/press 2",
            "And the second city?",
            "/press 1",
            "/press 9",
        ],
    )
    assert code == 0, err
    assert "\n  [1] • Colour of the sky?\n  [2] Capital of France?\n" in out
    assert "you> /press 2\nbot> Back to “Capital of France?”" in out
    # The model was given the conversation pressed back to.
    seen = [m["content"] for m in openai_server.last_chat_messages()]
    assert "Paris." in seen and "Blue." not in seen
    # A keyboard is spent once pressed; a number never shown is the console's own error.
    assert "you> /press 1\nbot (notice)> This button no longer works.\n" in out
    assert "you> /press 9\nconsole: no button 9\n" in out


async def test_console_sends_files_and_speaks_the_users_language(
    openai_server: FakeOpenAI, bot_harness: BotHarness, tmp_path: Path
) -> None:
    write_config(bot_harness, ["history", "chat", "voice"])
    (tmp_path / "hello.ogg").write_bytes(sample_audio("opus")[0])
    (tmp_path / "notes.txt").write_text("a document")
    openai_server.script_transcription("what time is it")
    openai_server.script_chat("It is noon.")
    code, out, err = await console(
        bot_harness,
        ["/file hello.ogg", "/file notes.txt", "/file missing.ogg", "/help"],
        "--language",
        "ru",
        "--user-id",
        "7",
    )
    assert code == 0, err
    assert "bot> 🎤 what time is it\nbot> It is noon.\n" in out
    assert "console: /file: cannot read missing.ogg: No such file or directory" in out
    assert "you> /help\nbot> Привет! Я бот на botcore." in out
    upload = next(r for r in openai_server.requests if r.path.endswith("/audio/transcriptions"))
    assert upload.files  # the voice went through the voice plugin to the model


async def test_a_bad_config_is_one_line_and_exit_code_2(bot_harness: BotHarness) -> None:
    write_config(bot_harness, ["history", "chta"])
    code, out, err = await console(bot_harness, ["hello"])
    assert code == 2
    assert out == ""
    assert err == "botcore: error: bot.plugins[1]: unknown plugin 'chta' (did you mean 'chat'?)\n"


async def test_ctrl_c_stops_the_console_cleanly(bot_harness: BotHarness) -> None:
    write_config(bot_harness)
    process = await bot_harness.spawn(
        None,
        command="console",
        env=environment(bot_harness),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stderr is not None
    banner = await process.stderr.readline()  # printed once the bot is up, waiting for input
    assert banner.startswith(b"botcore console: plugins welcome, history, chat, image")
    process.send_signal(signal.SIGINT)
    _, err = await process.communicate()
    assert process.returncode == 0, err
    assert b"Traceback" not in err


async def test_interactive_session_prompts_and_ends_with_ctrl_d(
    openai_server: FakeOpenAI, bot_harness: BotHarness
) -> None:
    write_config(bot_harness)
    leader, follower = pty.openpty()
    process = await bot_harness.spawn(
        None,
        command="console",
        env=environment(bot_harness),
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    screen = bytearray()

    def read_until(token: bytes, count: int = 1) -> bytes:
        while screen.count(token) < count:
            ready, _, _ = select.select([leader], [], [], 30)
            assert ready, f"no {token!r} on the terminal:\n{screen.decode(errors='replace')}"
            screen.extend(os.read(leader, 4096))
        return bytes(screen)

    try:
        await asyncio.to_thread(read_until, b"you> ")
        os.write(leader, b"/start\n")
        shown = await asyncio.to_thread(read_until, b"you> ", 2)
        assert b"bot> Hi! I'm a bot built on botcore." in shown
        # While a slow answer streams in, a status line tells how far it got; then the answer.
        answer = "A slow answer that streams in over a second and a half, word by word."
        openai_server.script_chat(ChatReply(text=answer, total_duration=1.5))
        os.write(leader, b"tell me slowly\n")
        shown = await asyncio.to_thread(read_until, b"you> ", 3)
        assert b"\r\x1b[K\xe2\x80\xa6 bot is writing (" in shown
        assert shown.count(answer.encode()) == 1
        os.write(leader, b"\x04")  # Ctrl-D
        assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(leader)


def test_importing_the_console_does_not_import_the_testing_kit() -> None:
    """The console runs the bot against the kit's fake Telegram, but loads it only when it runs:
    the command line of a production bot never imports the testing kit."""
    check = (
        "import sys, botcore.cli, botcore.testing.console; "
        "assert 'botcore.testing.fake_telegram' not in sys.modules, 'the kit was imported'"
    )
    subprocess.run([sys.executable, "-c", check], check=True)
