"""Languages: adding one is adding a file (bot.locales_dir, a plugin's locales/ folder), and every
text of the core and of the first-party plugins exists in English and Russian."""

from __future__ import annotations

import asyncio
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from botcore.config import Config, ConfigError, validate
from botcore.i18n import read_locales
from botcore.plugins import DISTRIBUTION, available_plugins
from botcore.runtime import Runtime
from botcore.testing.fake_telegram import FakeTelegram
from botcore.testing.harness import BotHarness

GREETER = "sample_plugins.greeter"
ROOT = Path(__file__).parent.parent
FIRST_PARTY = sorted(
    name for name, ep in available_plugins().items() if ep.dist and ep.dist.name == DISTRIBUTION
)

GERMAN = """\
# The operator's German: only some keys; the rest falls back to bot.language.
unknown_command = "Den Befehl /{command} kenne ich nicht."
"welcome.help" = "Befehle auflisten"

[greeter]          # a plugin's key, translated here: greeter.hello
hello = "Hallo, {name}!"
"""


def app_for(bot: dict[str, Any], plugins: list[str] | None = None) -> Runtime:
    config = validate(Config, {"bot": {"token": "1:A", "plugins": plugins or [], **bot}})
    return asyncio.run(Runtime.create(config))


async def test_a_german_file_makes_german_users_get_german(
    bot_harness: BotHarness, telegram: FakeTelegram
) -> None:
    locales = bot_harness.workdir / "locales"
    locales.mkdir()
    (locales / "de.toml").write_text(GERMAN, encoding="utf-8")
    (locales / "en.toml").write_text('"greeter.bye" = "See you!"\n', encoding="utf-8")
    await bot_harness.start([GREETER], bot={"language": "ru", "locales_dir": "locales"})
    german = {"language_code": "de-AT", "user_id": 49, "first_name": "Lena"}

    assert (await telegram.reply_to("/nosuch", **german)).text == (
        "Den Befehl /nosuch kenne ich nicht."
    )
    assert (await telegram.reply_to("/greet", **german)).text == "Hallo, Lena!"
    # Missing in German: the default language (bot.language = "ru"), not English.
    assert (await telegram.reply_to("hello", **german)).text == (
        "Здесь я отвечаю только на команды. Список — /help."
    )
    help_text = (await telegram.reply_to("/help", **german)).text or ""
    assert "/help — Befehle auflisten" in help_text and "/start — Запустить бота" in help_text
    # Others are unaffected; a language nobody wrote gets the default.
    assert (await telegram.reply_to("/greet", user_id=50, language_code="ru")).text == (
        "Привет, Test!"
    )
    assert (await telegram.reply_to("/greet", user_id=51)).text == "Hello, Test!"
    assert (await telegram.reply_to("/nosuch", user_id=52, language_code="fr")).text == (
        "Я не знаю команду /nosuch. Что я умею — /help."
    )
    menu = {c["command"]: c["description"] for c in telegram.commands[("default", "de")]}
    assert menu["help"] == "Befehle auflisten"


def test_the_locales_folder_overrides_core_and_plugin_texts(tmp_path: Path) -> None:
    (tmp_path / "en.toml").write_text('error = "Oops."\n"greeter.bye" = "See you!"\n')
    app = app_for({"locales_dir": str(tmp_path)}, [GREETER])
    assert app.t("error", "en") == "Oops."
    assert app.t("greeter.bye", "en") == "See you!"
    assert app.t("greeter.bye", "ru") == "До свидания!"  # the plugin's own file
    assert app.texts.languages == ["en", "ru"]


def test_a_plugin_locale_alone_does_not_add_a_language(tmp_path: Path) -> None:
    """A plugin speaking German while the core does not would answer German users half in German."""
    app = app_for({}, [GREETER])
    assert app.texts.language_for("de") == "en"
    (tmp_path / "de.toml").write_text('error = "Fehler."\n')
    app = app_for({"locales_dir": str(tmp_path), "language": "de"}, [GREETER])
    assert app.texts.language_for("de-CH") == "de" and app.texts.languages == ["de", "en", "ru"]
    assert app.t("error") == "Fehler."  # bot.language = "de" is allowed once de.toml exists
    assert app.t("welcome") == "Hi! I'm a bot built on botcore. Here is what I can do:"


@pytest.mark.parametrize(
    ("files", "setting", "message"),
    [
        ({}, "missing", "bot.locales_dir: no such folder: missing"),
        ({"de.toml": "error = "}, None, "bot.locales_dir: de.toml: invalid TOML"),
        (
            {"de.toml": "error = 3"},
            None,
            "bot.locales_dir: de.toml: error: a text must be a string",
        ),
        (
            {"de.toml": "[chat]\ntoo_long = [1]"},
            None,
            "bot.locales_dir: de.toml: chat.too_long: a text must be a string",
        ),
        ({"de.toml": 'error = "x"'}, None, None),
    ],
)
def test_bad_locale_files_stop_start_up_naming_the_file(
    tmp_path: Path, files: dict[str, str], setting: str | None, message: str | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    folder = setting or str(tmp_path)
    if setting:
        folder = str(tmp_path / setting)
    if message is None:
        assert app_for({"locales_dir": folder}).t("error", "de") == "x"
        return
    with pytest.raises(ConfigError) as info:
        app_for({"locales_dir": folder})
    assert str(info.value).startswith(message.replace("missing", folder))


def test_every_text_exists_in_english_and_russian() -> None:
    """The core, the built-in welcome and every first-party plugin, by whatever mechanism."""
    assert {"chat", "history", "image", "voice"} <= set(FIRST_PARTY)
    core = read_locales(resources.files("botcore") / "locales")
    assert set(core) >= {"en", "ru"}
    assert set(core["en"]) == set(core["ru"])
    app = app_for({}, FIRST_PARTY)
    en, ru = app.texts.keys("en"), app.texts.keys("ru")
    assert en - ru == set(), "missing in ru.toml / the plugins' Russian texts"
    assert ru - en == set(), "missing in en.toml / the plugins' English texts"
    for command in app.visible_commands():
        assert not isinstance(command.help, str), f"/{command.name}: help is not localized"
        assert {"en", "ru"} <= set(command.help), f"/{command.name}: help lacks en or ru"


KEY_USE = re.compile(r"""(?:\.t|translations)\(\s*["']([\w.]+)["']|\bkey = ["']([\w.]+)["']""")


def test_every_text_the_code_asks_for_is_defined() -> None:
    """A typo in turn.t("…") would show users the bare key; catch it here."""
    app = app_for({}, FIRST_PARTY)
    defined = app.texts.keys("en")
    sources = [*(ROOT / "botcore").glob("*.py"), *(ROOT / "plugins").glob("*/*.py")]
    used = {
        key
        for path in sources
        for match in KEY_USE.finditer(path.read_text(encoding="utf-8"))
        for key in match.groups()
        if key
    }
    assert {"error", "chat.too_long", "ai.rate_limited", "welcome.help"} <= used
    assert used - defined == set()
