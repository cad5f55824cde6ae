"""User-facing texts by language: the core's from botcore/locales/*.toml, plugins' from a hook."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from typing import Any


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class Texts:
    """Looks a key up in the user's language, then the default language, then English."""

    def __init__(self, default_language: str = "en") -> None:
        self.default_language = default_language
        self._texts: dict[str, dict[str, str]] = {}
        for entry in (resources.files("botcore") / "locales").iterdir():
            if entry.name.endswith(".toml"):
                self.add({entry.name[: -len(".toml")]: tomllib.loads(entry.read_text("utf-8"))})

    @property
    def languages(self) -> list[str]:
        """Languages the core speaks (a plugin cannot add a language the core lacks)."""
        return sorted(self._texts)

    def add(self, texts: Mapping[str, Mapping[str, str]]) -> None:
        """Merge texts ({lang: {key: text}}); later additions win."""
        for lang, table in texts.items():
            self._texts.setdefault(lang, {}).update(table)

    def language_for(self, code: str | None) -> str:
        """Map Telegram's language_code ("ru", "en-US", "pt-br") to a language we speak."""
        if code:
            base = code.lower().replace("_", "-").split("-")[0]
            if base in self._texts:
                return base
        return self.default_language

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
