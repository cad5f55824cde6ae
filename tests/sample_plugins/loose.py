"""A plugin whose settings are plain pydantic models, so a misspelt key passes: start-up warns."""

from __future__ import annotations

from pydantic import BaseModel

from botcore import hookimpl


class Limits(BaseModel):
    per_day: int = 10


class Settings(BaseModel):
    max_dice: int = 20
    limits: Limits = Limits()


@hookimpl
def settings_model() -> type[Settings]:
    return Settings
