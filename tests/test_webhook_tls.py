"""The webhook over HTTPS (bot.webhook.cert/key): a self-signed certificate uploaded to Telegram,
one signed by a CA Telegram trusts, one Telegram cannot check (refused, as Telegram refuses it),
and certificate files that cannot be used (start-up stops, naming the setting)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest

from botcore.config import Config, ConfigError, StartupError, validate
from botcore.runner import certificates_only, tls_context
from botcore.testing.fake_telegram import FakeTelegram

ECHO = "sample_plugins.echo"


def self_signed(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for `host` and its key, made the way Telegram's instructions
    make one (`openssl req -x509`: its own root, so it can be uploaded and trusted)."""
    cert, key = folder / "public.pem", folder / "private.key"
    command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30"
    names = ["-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run([*command.split(), *names, *files], check=True, capture_output=True)
    return cert, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def webhook(port: int, **tls: object) -> dict[str, object]:
    return {
        "mode": "webhook",
        "webhook": {
            "url": f"https://127.0.0.1:{port}/tg",
            "listen": "127.0.0.1",
            "port": port,
            "path": "/tg",
            **tls,
        },
    }


async def test_a_self_signed_certificate_is_uploaded_without_its_key(
    start_bot, telegram: FakeTelegram, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    combined = tmp_path / "combined.pem"  # certificate and key in one file, as some tools write
    combined.write_bytes(cert.read_bytes() + key.read_bytes())
    port = free_port()
    await start_bot([ECHO], bot=webhook(port, cert=str(combined), upload_cert=True))
    assert telegram.webhook is not None
    uploaded = telegram.webhook["certificate"]
    assert uploaded == cert.read_bytes() and b"PRIVATE KEY" not in uploaded
    assert (await telegram.reply_to("over https", timeout=10)).text == "echo: over https"
    # Plain HTTP to the HTTPS port gets no answer; the bot goes on serving.
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            await session.post(f"http://127.0.0.1:{port}/tg", json={"update_id": 1})
    assert (await telegram.reply_to("still here", timeout=10)).text == "echo: still here"


async def test_a_certificate_signed_by_a_trusted_ca_needs_no_upload(
    start_bot, telegram: FakeTelegram, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    telegram.webhook_cafile = str(cert)  # as if a public CA had signed it
    port = free_port()
    await start_bot([ECHO], bot=webhook(port, cert=str(cert), key=str(key)))
    assert telegram.webhook is not None and telegram.webhook["certificate"] is None
    assert (await telegram.reply_to("signed", timeout=10)).text == "echo: signed"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"https://127.0.0.1:{port}/healthz", ssl=False) as response,
    ):
        assert response.status == 200 and await response.text() == "ok"


async def test_a_certificate_telegram_cannot_check_gets_no_updates(
    start_bot, telegram: FakeTelegram, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    await start_bot([ECHO], bot=webhook(free_port(), cert=str(cert), key=str(key)))
    await telegram.send_message("lost")
    await telegram.wait_for(lambda: 0 in telegram.webhook_deliveries, timeout=10)
    info = await telegram._get_webhook_info(None)  # type: ignore[arg-type]
    assert "SSL error" in info["last_error_message"]
    assert "certificate verify failed" in info["last_error_message"]
    assert info["has_custom_certificate"] is False
    await asyncio.sleep(0.2)
    assert telegram.bot_messages(42) == []


def test_certificate_files_that_cannot_be_used_stop_start_up(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    other_cert, other_key = self_signed(other)
    assert tls_context(cert, key) is not None
    with pytest.raises(StartupError, match=r"^bot\.webhook\.cert: no such file: .*missing\.pem$"):
        tls_context(tmp_path / "missing.pem", None)
    with pytest.raises(StartupError, match=r"^bot\.webhook\.key: no such file: .*gone\.key$"):
        tls_context(cert, tmp_path / "gone.key")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(StartupError, match=r"^bot\.webhook\.cert: cannot load .*garbage\.pem"):
        tls_context(garbage, None)
    with pytest.raises(StartupError, match=r"^bot\.webhook\.cert/key: cannot load"):
        tls_context(cert, other_key)  # a key that is not the certificate's
    with pytest.raises(StartupError, match=r"^bot\.webhook\.cert: no PEM certificate"):
        certificates_only(key.read_bytes())
    chain = cert.read_bytes() + key.read_bytes() + other_cert.read_bytes()
    assert certificates_only(chain) == cert.read_bytes() + other_cert.read_bytes()


@pytest.mark.parametrize(
    ("webhook_table", "message"),
    [
        ({"key": "k.pem"}, "key is set without cert"),
        ({"upload_cert": True}, "upload_cert needs cert"),
    ],
)
def test_tls_settings_that_do_not_fit_together(
    webhook_table: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(Config, {"bot": {"token": "1:A", "webhook": webhook_table}})
