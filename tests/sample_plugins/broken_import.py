"""A plugin whose import fails: start-up must name it and the cause."""

import botcore_no_such_dependency  # noqa: F401
