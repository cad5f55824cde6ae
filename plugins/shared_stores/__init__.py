"""The stores several bot processes share: `[store] backend = "postgres"` or `"redis"`.

Found through the `botcore.stores` entry point group: a backend's name -> a factory called with
`[store] url` (not named after its module, which would replace it once imported). Each driver
is an extra: a backend whose driver is missing stops start-up with the command that installs it.
"""

from __future__ import annotations

import importlib.util

import botcore

DISTRIBUTION = "botcore-framework"


def postgres_store(url: str) -> botcore.Store:
    """A PostgreSQL store (asyncpg), not yet opened."""
    _require("postgres", "asyncpg")
    from .postgres import PostgresStore

    return PostgresStore(url)


def redis_store(url: str) -> botcore.Store:
    """A Redis store (redis-py), not yet opened."""
    _require("redis", "redis")
    from .redis import RedisStore

    return RedisStore(url)


def _require(backend: str, driver: str) -> None:
    """Fail start-up with the install command when the backend's driver is missing (looked up,
    not imported: the store imports it when it opens)."""
    if importlib.util.find_spec(driver) is None:
        raise botcore.ConfigError(
            f'store: backend "{backend}" needs the {driver} package, which is not installed: '
            f"pip install '{DISTRIBUTION}[{backend}]'"
        )
