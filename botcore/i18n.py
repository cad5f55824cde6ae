"""User-facing texts by language: `<language>.toml` files (the core's, each plugin's, the operator's
`bot.locales_dir`) and the `register_texts` hook. Adding a language is adding one such file."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from botcore.config import ConfigError


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class Texts:
    """Looks a key up in the user's language, then the default language, then English."""

    def __init__(self, default_language: str = "en") -> None:
        self.default_language = default_language
        self._texts: dict[str, dict[str, str]] = {}
        self._spoken: set[str] = set()
        self.add(read_locales(resources.files("botcore") / "locales"), speak=True)

    @property
    def languages(self) -> list[str]:
        """Languages users are answered in: the core's and those of `bot.locales_dir`.

        A plugin's texts in another language are kept, but do not make the bot speak it: a user
        would get that plugin in their language and everything else in the default one.
        """
        return sorted(self._spoken)

    def add(self, texts: Mapping[str, Mapping[str, str]], *, speak: bool = False) -> None:
        """Merge texts ({lang: {key: text}}); later additions win. `speak`: users may be
        answered in these languages (the core's files and the operator's locales folder)."""
        for lang, table in texts.items():
            self._texts.setdefault(lang, {}).update(table)
            if speak:
                self._spoken.add(lang)

    def language_for(self, code: str | None) -> str:
        """Map Telegram's language_code ("ru", "en-US", "pt-br") to a language we speak."""
        if code:
            base = code.lower().replace("_", "-").split("-")[0]
            if base in self._spoken:
                return base
        return self.default_language

    def keys(self, language: str) -> set[str]:
        """Every key defined in `language` (for tests that every text is translated)."""
        return set(self._texts.get(language, {}))

    def translations(self, key: str) -> dict[str, str]:
        """{language: text} for every language that defines `key` (for Command.help)."""
        return {lang: table[key] for lang, table in self._texts.items() if key in table}

    def get(self, key: str, language: str, **values: Any) -> str:
        """The text for `key`, with {placeholders} filled; the key itself if nobody defines it."""
        for lang in (language, self.default_language, "en"):
            text = self._texts.get(lang, {}).get(key)
            if text is not None:
                return text.format_map(_Missing(values)) if values else text
        return key


def read_locales(folder: Traversable | Path, where: str | None = None) -> dict[str, dict[str, str]]:
    """{language: {key: text}} from every `<language>.toml` in `folder` (none if it is absent).

    Nested tables flatten to dotted keys, so `[chat]` + `too_long = "…"` is `chat.too_long`.
    A broken file is a ConfigError naming `where` (the setting or plugin) and the file.
    """
    found: dict[str, dict[str, str]] = {}
    if not folder.is_dir():
        return found
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml") or entry.is_dir():
            continue
        language = entry.name[: -len(".toml")].lower()
        label = f"{where}: {entry.name}" if where else entry.name
        try:
            data = tomllib.loads(entry.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{label}: invalid TOML: {exc}") from None
        found[language] = _flatten(data, label)
    return found


def _flatten(data: Mapping[str, Any], label: str, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, label, name + "."))
        elif isinstance(value, str):
            flat[name] = value
        else:
            raise ConfigError(f"{label}: {name}: a text must be a string")
    return flat


def plugin_locales(module: Any) -> Traversable | None:
    """The `locales` folder shipped inside a plugin package, if it has one."""
    if not getattr(module, "__path__", None):
        return None  # a single-module plugin: texts come from register_texts only
    folder = resources.files(module.__name__) / "locales"
    return folder if folder.is_dir() else None
