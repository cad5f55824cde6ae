"""`botcore console`: chat with the bot in the terminal, through the real plugins, without Telegram.

The real bot (Runner, pipeline, delivery, every plugin in bot.toml) polls an in-process fake
Telegram on 127.0.0.1. Each line read is a private message from a console user; once the turn is
over, what the bot sent is printed, and its photos, voice and documents are saved to files.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import mimetypes
import shlex
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pydantic import SecretStr

from botcore import hookimpl
from botcore.config import Config
from botcore.runner import Runner
from botcore.runtime import Runtime
from botcore.turn import Turn

if TYPE_CHECKING:
    from botcore.testing.fake_telegram import BotMessage, FakeTelegram, Sender

CONSOLE_TOKEN = "100000:CONSOLE-TOKEN"
"""The fake's own token: bot.token is never used (nor needed) by the console."""
BOT_OVERRIDES = {"token": CONSOLE_TOKEN, "mode": "polling"}
"""[bot] keys the console replaces before validation; see botcore.config.load_config."""
VOICE_SUFFIXES = {".ogg", ".oga", ".opus"}
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
AUDIO_SUFFIXES = {".mp3", ".m4a", ".wav", ".flac", ".aac"}
STATUS_EVERY = 0.2
"""Seconds between updates of the "bot is writing" line in an interactive session."""
HELP = (
    "type a message; /file PATH [caption] sends a file; /press N presses button [N]; Ctrl-D quits"
)


class ConsoleError(Exception):
    """A console command could not be carried out (a missing file): one line, the session goes on."""


@dataclass(frozen=True)
class ConsoleOptions:
    """Who the console user is and where the bot's files go."""

    user_id: int = 1
    language: str | None = None
    """The user's Telegram language code; None leaves it to bot.language."""
    files: Path = Path("botcore-console")
    interactive: bool = False
    """A prompt (with line editing) instead of echoing each line read from a pipe."""


class _Turns:
    """Tells the console when the turn of each message is over: a turn_end hook of its own,
    registered beside the plugins' (it runs once the turn's replies are sent)."""

    def __init__(self) -> None:
        self.finished: set[tuple[int, int]] = set()
        self.changed = asyncio.Event()

    @hookimpl(trylast=True)
    def turn_end(self, turn: Turn) -> None:
        self.finished.add((turn.chat_id, turn.message.message_id))
        self.changed.set()

    async def wait(self, chat_id: int, message_id: int) -> None:
        """Return once the turn of this message is over (its replies are sent)."""
        key = (chat_id, message_id)
        while key not in self.finished:
            self.changed.clear()
            await self.changed.wait()
        self.finished.discard(key)


async def run_console(config: Config, options: ConsoleOptions, out: IO[str] = sys.stdout) -> int:
    """Start the fake Telegram and the bot, then chat until end of input; returns the exit code."""
    # The console is a bot talking to a local fake Telegram: the kit's server, loaded only here,
    # so importing the command line (or this module) does not import the testing kit.
    from botcore.testing.fake_telegram import FakeTelegram

    fake = FakeTelegram(CONSOLE_TOKEN, bot_username="botcore_console_bot", bot_name="botcore")
    await fake.start()
    runner: Runner | None = None
    try:
        bot = config.bot.model_copy(
            update={
                "token": SecretStr(fake.token),
                "base_url": fake.base_url,
                "base_file_url": fake.base_file_url,
                "local_mode": False,
                "poll_timeout": 10,
            }
        )
        app = Runtime(config.model_copy(update={"bot": bot}))
        turns = _Turns()
        app.plugins.pm.register(turns, name="console")
        runner = Runner(app)
        await runner.start()
        session = _Session(fake, turns, options, out)
        print(f"botcore console: plugins {', '.join(app.plugins.names)}; {HELP}", file=sys.stderr)
        await session.chat()
        return 0
    finally:
        if runner is not None:
            await runner.stop()
        await fake.stop()


class _Session:
    """One console conversation: read a line, send it, wait for the turn, print what came back."""

    def __init__(
        self, fake: FakeTelegram, turns: _Turns, options: ConsoleOptions, out: IO[str]
    ) -> None:
        self.fake = fake
        self.turns = turns
        self.options = options
        self.out = out
        self.chat_id = options.user_id
        self.sender: Sender = {
            "user_id": options.user_id,
            "language_code": options.language,
            "first_name": "Console",
            "username": "console",
        }
        self.shown: dict[int, tuple[bool, str | None]] = {}
        self.saved: dict[int, str] = {}
        self.buttons: dict[int, tuple[BotMessage, dict[str, Any]]] = {}
        """The inline buttons shown so far, by the number printed beside them (/press N)."""

    async def chat(self) -> None:
        """Converse until end of input (or until whoever reads our output goes away)."""
        lines = _Lines(asyncio.get_running_loop(), "you> " if self.options.interactive else "")
        with lines.terminal_restored(), contextlib.suppress(BrokenPipeError):
            self.show_new()  # anything sent at start-up
            while (line := await lines.read()) is not None:
                if not line.strip():
                    continue
                if not self.options.interactive:
                    self.say(f"you> {line}")
                try:
                    if line.split(maxsplit=1)[0] == "/press":
                        await self.press(line)
                    else:
                        message = await self.send(line)
                        await self.wait_for_turn(message["message_id"])
                except ConsoleError as exc:
                    self.say(f"console: {exc}")
                    continue
                self.show_new()
            if self.options.interactive:
                self.say("")  # after ^D, leave the shell prompt on a line of its own

    async def wait_for_turn(self, message_id: int) -> None:
        """Wait until the bot is done with the message; on a terminal, show how it is getting on
        (the answer itself is printed once final, so that no edit can garble it)."""
        turn = asyncio.ensure_future(self.turns.wait(self.chat_id, message_id))
        if not (self.options.interactive and sys.stderr.isatty()):
            await turn
            return
        sent_before = len(self.fake.bot_messages(self.chat_id))
        actions_before = len(self.fake.chat_actions)
        status = ""
        try:
            while not turn.done():
                await asyncio.wait({turn}, timeout=STATUS_EVERY)
                now = self.status(sent_before, actions_before)
                if now != status:
                    sys.stderr.write(f"\r\x1b[K{now}")
                    sys.stderr.flush()
                    status = now
        finally:
            turn.cancel()
            if status:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()

    def status(self, sent_before: int, actions_before: int) -> str:
        """ "bot is writing… (N characters)" while an answer grows, or the bot's chat action."""
        sent = self.fake.bot_messages(self.chat_id)[sent_before:]
        if sent:
            size = sum(len(m.plain if m.plain is not None else m.text or "") for m in sent)
            return f"… bot is writing ({size} characters)"
        actions = [a for c, a in self.fake.chat_actions[actions_before:] if c == self.chat_id]
        return f"… bot: {actions[-1]}" if actions else ""

    async def send(self, line: str) -> dict[str, Any]:
        """Push the line as the console user's message; `/file PATH [caption]` sends a file."""
        if line.split(maxsplit=1)[0] != "/file":
            return await self.fake.send_message(line, **self.sender)
        upload = _read_upload(line)
        if upload.kind == "photo":
            return await self.fake.send_photo(upload.data, caption=upload.caption, **self.sender)
        return await self.fake.send_voice(
            upload.data,
            kind=upload.kind,
            mime_type=upload.mime,
            caption=upload.caption,
            file_name=upload.name,
            **self.sender,
        )

    async def press(self, line: str) -> None:
        """`/press N`: press button [N] as the console user; the bot's answer is its turn's, or
        the notice Telegram shows for a press that is refused (spent, expired)."""
        number = line.split(maxsplit=1)[1].strip() if " " in line.strip() else ""
        found = self.buttons.get(int(number)) if number.isdigit() else None
        if found is None:
            raise ConsoleError(f"no button {number or '(give its number: /press 1)'}")
        message, button = found
        if "callback_data" not in button:
            self.say(f"bot> (a link: {button.get('url', '?')})")
            return
        update = await self.fake.send_callback_query(
            message,
            button["callback_data"],
            user_id=self.options.user_id,
            first_name="Console",
            username="console",
            language_code=self.options.language,
        )
        query = update["callback_query"]["id"]
        key = (self.chat_id, message.message_id)
        while key not in self.turns.finished:
            answers = [
                c.params
                for c in self.fake.calls("answerCallbackQuery")
                if c.params.get("callback_query_id") == query
            ]
            if answers and answers[-1].get("text"):  # refused: no turn follows
                self.say(f"bot (notice)> {answers[-1]['text']}")
                return
            self.turns.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.turns.changed.wait(), 0.05)
        self.turns.finished.discard(key)

    def show_new(self) -> None:
        """Print the bot's messages in the console chat that are new or changed since last time."""
        for message in self.fake.bot_messages(self.chat_id):
            state = (message.deleted, message.plain if message.plain is not None else message.text)
            before = self.shown.get(message.message_id)
            if before == state:
                continue
            self.shown[message.message_id] = state
            if message.deleted:
                self.say(f"bot (deleted)> {self.describe(message)}")
            elif before is None:
                self.say(f"bot> {self.describe(message)}")
            else:
                self.say(f"bot (edited)> {self.describe(message)}")

    def describe(self, message: BotMessage) -> str:
        """A text as it reads; a media message as [kind PATH] and its caption."""
        text = message.plain if message.plain is not None else (message.text or "")
        text += self.keyboard(message)
        if message.kind == "text":
            return text
        where = self.saved.get(message.message_id)
        if where is None:
            where = self.saved[message.message_id] = self.save(message)
        return f"[{message.kind} {where}] {text}".rstrip()

    def keyboard(self, message: BotMessage) -> str:
        """The message's inline buttons, a row a line, each numbered for /press."""
        rows = (message.reply_markup or {}).get("inline_keyboard") or []
        lines = []
        for row in rows:
            cells = []
            for button in row:
                number = len(self.buttons) + 1
                self.buttons[number] = (message, button)
                cells.append(f"[{number}] {button.get('text', '')}")
            lines.append("  " + "  ".join(cells))
        return "".join("\n" + line for line in lines)

    def save(self, message: BotMessage) -> str:
        """Write the media the bot uploaded to a new file; a URL or a file_id is shown as is."""
        if not message.data:
            return message.media_ref or "(no data)"
        folder = self.options.files
        folder.mkdir(parents=True, exist_ok=True)
        name = _file_name(message)
        stem, suffix = Path(name).stem, Path(name).suffix
        path = folder / name
        for n in itertools.count(1):
            if not path.exists():
                break
            path = folder / f"{stem}-{n}{suffix}"
        path.write_bytes(message.data)
        return str(path)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


@dataclass(frozen=True)
class _Upload:
    kind: str
    data: bytes
    mime: str
    name: str
    caption: str | None


def _read_upload(line: str) -> _Upload:
    """`/file PATH [caption]`: the file, sent as a voice, a photo, audio or a document by its type."""
    try:
        words = shlex.split(line)[1:]
    except ValueError as exc:
        raise ConsoleError(f"/file: {exc}") from None
    if not words:
        raise ConsoleError("usage: /file PATH [caption]")
    path = Path(words[0]).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConsoleError(f"/file: cannot read {path}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if suffix in PHOTO_SUFFIXES:
        kind = "photo"
    elif suffix in VOICE_SUFFIXES:
        kind, mime = "voice", "audio/ogg"
    elif suffix in AUDIO_SUFFIXES:
        kind = "audio"
    else:
        kind = "document"
    return _Upload(kind, data, mime, path.name, " ".join(words[1:]) or None)


def _file_name(message: BotMessage) -> str:
    """The document's own name, else the kind and an extension from the bytes."""
    media = message.raw.get(message.kind)
    if isinstance(media, dict) and media.get("file_name"):
        return Path(str(media["file_name"])).name
    data = message.data or b""
    if message.kind == "photo":
        suffix = (
            ".png"
            if data.startswith(b"\x89PNG")
            else ".webp"
            if data[8:12] == b"WEBP"
            else ".gif"
            if data.startswith(b"GIF8")
            else ".jpg"
        )
    else:
        suffix = {"voice": ".ogg", "audio": ".mp3", "video": ".mp4", "video_note": ".mp4"}.get(
            message.kind, ".bin"
        )
    return f"{message.kind}-{message.message_id}{suffix}"


class _Lines:
    """stdin, one line at a time on request, from a daemon thread (so Ctrl-C never waits on it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, prompt: str) -> None:
        self.loop = loop
        self.prompt = prompt
        self.requests: list[asyncio.Future[str | None]] = []
        self.wake = threading.Condition()
        if prompt:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401  (line editing and history for input())
        threading.Thread(target=self._work, name="botcore-console-stdin", daemon=True).start()

    async def read(self) -> str | None:
        """The next line without its newline; None at end of input."""
        future: asyncio.Future[str | None] = self.loop.create_future()
        with self.wake:
            self.requests.append(future)
            self.wake.notify()
        return await future

    def _work(self) -> None:
        while True:
            with self.wake:
                while not self.requests:
                    self.wake.wait()
                future = self.requests.pop(0)
            line: str | None
            try:
                if self.prompt:
                    line = input(self.prompt)
                else:
                    raw = sys.stdin.readline()
                    line = raw.rstrip("\r\n") if raw else None
            except (EOFError, OSError, ValueError):
                line = None
            self.loop.call_soon_threadsafe(_resolve, future, line)
            if line is None:
                return

    @contextlib.contextmanager
    def terminal_restored(self) -> Iterator[None]:
        """Put the terminal back as it was even if we leave while line editing holds it."""
        if not self.prompt or not sys.stdin.isatty():
            yield
            return
        import termios

        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        try:
            yield
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _resolve(future: asyncio.Future[str | None], line: str | None) -> None:
    if not future.done():
        future.set_result(line)
