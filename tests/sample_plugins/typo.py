"""A plugin with a misspelled hook name: start-up must refuse it."""

from botcore import hookimpl


@hookimpl
def register_comands() -> list[object]:
    return []
