"""Read bot.toml: expand ${VAR} from the environment and validate it, failing with one clear line."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

M = TypeVar("M", bound=BaseModel)

TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class StartupError(Exception):
    """The bot cannot start: one line for the operator, never a traceback or a secret value."""

    exit_code = 2
    """The exit code of `botcore run` (2: the config; botcore.runner's subclasses differ)."""


class ConfigError(StartupError):
    """A problem with bot.toml or a plugin: one line naming the dotted path, never a secret value."""


class StrictModel(BaseModel):
    """A settings table: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


def loose_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """`model` and the models its fields hold (lists, dicts, unions of them) that accept unknown
    keys, in the order found: each lets a misspelt key in bot.toml pass unnoticed."""
    seen: set[type[BaseModel]] = set()
    loose: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                return
            seen.add(annotation)
            if annotation.model_config.get("extra") != "forbid":
                loose.append(annotation)
            for field in annotation.model_fields.values():
                visit(field.annotation)
            return
        for argument in typing.get_args(annotation):
            visit(argument)

    visit(model)
    return loose


class WebhookSettings(StrictModel):
    """[bot.webhook]: where Telegram posts updates in webhook mode."""

    url: str | None = None
    """The public HTTPS URL Telegram posts to, e.g. https://bot.example.com/telegram."""
    listen: str = "0.0.0.0"
    port: int = Field(8443, ge=1, le=65535)
    path: str = "/telegram"
    secret_token: SecretStr | None = None
    """Telegram sends it back in X-Telegram-Bot-Api-Secret-Token; requests without it are refused."""
    cert: Path | None = None
    """A PEM certificate (chain) to serve HTTPS with; unset, plain HTTP behind a TLS proxy."""
    key: Path | None = None
    """The certificate's private key (PEM); unset, it is read from the `cert` file."""
    upload_cert: bool = False
    """Send `cert` to Telegram with setWebhook: needed for a self-signed certificate."""

    @model_validator(mode="after")
    def _key_needs_cert(self) -> WebhookSettings:
        if self.key is not None and self.cert is None:
            raise ValueError("key is set without cert (the certificate to serve HTTPS with)")
        if self.upload_cert and self.cert is None:
            raise ValueError("upload_cert needs cert (the certificate to upload)")
        return self


class BreakerSettings(StrictModel):
    """[bot.breaker]: when a plugin that keeps failing is switched off for a while."""

    failures: int = Field(10, ge=0, le=1_000_000)
    """Unexpected errors within `window` seconds that switch a plugin off; 0 never does."""
    window: float = Field(60.0, gt=0, le=86_400)
    cooldown: float = Field(300.0, gt=0, le=86_400)
    """Seconds a switched-off plugin stays off before a trial call may bring it back."""


class LimitSettings(StrictModel):
    """[bot.limits]: Telegram's flood limits, kept by the delivery scheduler (botcore.scheduler)."""

    enabled: bool = True
    """false: no budgets (a local Bot API server, paid broadcasts); 429s are still respected."""
    global_per_second: float = Field(30.0, gt=0, le=100_000)
    global_burst: float = Field(10.0, ge=1, le=100_000)
    chat_per_second: float = Field(1.0, gt=0, le=1000)
    """Messages a second in one chat, private or group, once its burst is spent."""
    chat_burst: float = Field(2.0, ge=1, le=1000)
    group_per_minute: int = Field(20, ge=1, le=100_000)
    max_wait: float = Field(600.0, ge=0, le=86_400)
    """Seconds a final answer may wait out flood control (429s); past that it is given up and
    the user is told once the ban is over."""


class BotSettings(StrictModel):
    """[bot]: the Telegram side."""

    token: SecretStr
    plugins: list[str] = Field(default_factory=list)
    mode: Literal["polling", "webhook"] = "polling"
    language: str = "en"
    admins: list[int] = Field(default_factory=list)
    """Telegram user ids of the bot's operators: admin commands, alerts (a plugin switched off)."""
    base_url: str | None = None
    base_file_url: str | None = None
    http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    """The HTTP stack under python-telegram-bot and the OpenAI client; aiohttp is much cheaper."""
    local_mode: bool = False
    """True for a local Bot API server (telegram-bot-api --local): no 20 MB download limit."""
    concurrency: int = Field(256, ge=1, le=100_000)
    """How many updates are processed at once (across chats; one chat is always in order)."""
    stream_edit_interval: float = Field(0.8, ge=0.1, le=60)
    """Seconds between edits of a streamed answer in private chats."""
    group_stream_edit_interval: float = Field(3.0, ge=0.1, le=60)
    """The same in groups, where Telegram allows about 20 messages a minute."""
    new_message_cancels: bool = False
    """A new message in a chat stops the answer in progress there if it is the sender's own
    (as /cancel does)."""
    poll_timeout: int = Field(30, ge=0, le=60)
    startup_timeout: float = Field(0, ge=0)
    """Seconds start-up keeps retrying while Telegram cannot be reached (network down, DNS,
    timeouts), waiting 1, 2, 4... up to 60 s between tries; 0 retries for ever."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["plain", "json"] = "plain"
    """plain: one human-readable line per event (key=value); json: one JSON object per line."""
    locales_dir: Path | None = None
    """A folder of <language>.toml files that add languages or override texts (core and plugins)."""
    metrics: dict[str, Any] | None = None
    """Before 0.2: Prometheus metrics, now a plugin; a table that turned them on is an error
    that says where they went (one that left them off is ignored)."""
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        if not TOKEN_SHAPE.match(value.get_secret_value()):
            raise ValueError(
                "does not look like a bot token (123456:ABC-DEF…); get one from @BotFather"
            )
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics_moved(cls, value: dict[str, Any] | None) -> None:
        if value and value.get("enabled"):
            raise ValueError(
                'moved to the metrics plugin: add "metrics" to bot.plugins, put listen and port '
                "under [plugins.metrics], and remove [bot.metrics]"
            )

    @model_validator(mode="after")
    def _webhook_needs_url(self) -> BotSettings:
        if self.mode == "webhook" and not self.webhook.url:
            raise ValueError('mode "webhook" needs bot.webhook.url (the public HTTPS URL)')
        return self

    @field_validator("plugins")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        seen = set()
        for name in value:
            if name in seen:
                raise ValueError(f"plugin {name!r} is listed twice")
            seen.add(name)
        return value


class OpenAISettings(StrictModel):
    """[openai]: any OpenAI-compatible endpoint (OpenAI, Azure, OpenRouter, Ollama, vLLM)."""

    api_key: SecretStr | None = None
    base_url: str | None = None
    timeout: float = Field(60.0, gt=0, le=3600)
    max_retries: int = Field(2, ge=0, le=10)


class StoreSettings(StrictModel):
    """[store]: where conversations, per-user settings and usage are kept."""

    backend: str = "sqlite"
    """sqlite: one file, one bot process. memory: nothing survives a restart (a test may ask).
    postgres, redis (extras), or any other `botcore.stores` entry point: a server that several
    bot processes share (see "Scaling out")."""
    path: str = "botcore.sqlite3"
    """The SQLite file (relative to the working directory)."""
    url: SecretStr | None = None
    """postgres: postgresql://user:password@host:5432/db; redis: redis://:password@host:6379/0."""

    @model_validator(mode="after")
    def _server_needs_url(self) -> StoreSettings:
        from botcore.store import BUILT_IN, store_backends

        if self.backend in BUILT_IN:
            return self
        if self.backend not in (found := store_backends()):
            known = [*BUILT_IN, *sorted(found)]
            raise ValueError(
                f'unknown backend "{self.backend}"{did_you_mean(self.backend, known)} '
                f"(installed: {', '.join(known)})"
            )
        if self.url is None:
            raise ValueError(f'backend "{self.backend}" needs store.url')
        return self


class Config(StrictModel):
    """The whole of bot.toml; `plugins` tables are validated by each plugin's own model."""

    bot: BotSettings
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tools: dict[str, Any] = Field(default_factory=dict)
    """[tools]: the tools' permission gate, validated once the tools are known (botcore.gate)."""

    def secrets(self) -> list[str]:
        """Every secret value in the config, for log redaction."""
        token = self.bot.token.get_secret_value()
        found = [token, token.partition(":")[2]]
        for secret in (self.openai.api_key, self.bot.webhook.secret_token):
            if secret is not None:
                found.append(secret.get_secret_value())
        if self.store.url is not None:
            found.extend(url_secrets(self.store.url.get_secret_value()))
        return [s for s in found if s]


def url_secrets(url: str) -> list[str]:
    """The password in a server URL, and the URL itself: both are kept out of logs."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return [url, *([password, unquote(password)] if password else [])]


def load_config(
    path: str | Path,
    environ: Mapping[str, str] | None = None,
    *,
    bot_overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read, expand and validate bot.toml; ConfigError with one line on any problem.

    `bot_overrides` replace [bot] keys before ${VAR} expansion: `botcore console` puts its own
    token there, so a config whose token variable is unset still runs in the console.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (pass --config PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {type(exc).__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    if bot_overrides:
        bot = raw.get("bot")
        raw["bot"] = {**(bot if isinstance(bot, dict) else {}), **bot_overrides}
    expanded = expand_env(raw, os.environ if environ is None else environ)
    if "bot" in expanded and isinstance(expanded["bot"], dict) and "token" not in expanded["bot"]:
        raise ConfigError(
            'bot.token: required; set token = "${TELEGRAM_BOT_TOKEN}" and export the variable '
            "(get a token from @BotFather)"
        )
    return validate(Config, expanded)


def expand_env(value: Any, environ: Mapping[str, str], path: str = "") -> Any:
    """Replace ${VAR} (or ${VAR:-default}) in every string; $$ is a literal $."""
    if isinstance(value, dict):
        return {k: expand_env(v, environ, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        found = environ.get(name)
        if found:
            return found
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set")

    return _VAR.sub(substitute, value)


def validate(model: type[M], data: Any, prefix: tuple[str | int, ...] = ()) -> M:
    """Validate data against a settings model; ConfigError naming the first bad dotted path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        first = errors[0]
        loc = tuple(first["loc"])
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key" + did_you_mean(str(loc[-1]), _fields_at(model, loc[:-1]))
            if (
                not prefix
                and len(loc) == 1
                and message == "unknown key"
                and "plugins" in (model.model_fields)
            ):
                # [mcp], [payments]...: the section of a plugin, written at the top level.
                message += f" (a plugin's settings go under [plugins.{loc[0]}])"
        elif first["type"] == "missing":
            message = "required"
        elif first["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{dotted(prefix + loc)}: {message}{more}") from None


def dotted(loc: tuple[str | int, ...]) -> str:
    """("bot", "plugins", 2) -> "bot.plugins[2]"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def did_you_mean(word: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The field names of the (nested) model found at loc, for "did you mean"."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside X, X | None, Optional[X]; else the annotation itself."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return annotation
