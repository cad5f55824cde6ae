"""pytest fixtures for botcore plugin authors (a pytest11 plugin)."""
