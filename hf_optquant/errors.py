"""One exception type for bad user input.

The CLI turns :class:`ConfigError` into a single line on stderr and exit code 2;
library callers get a normal exception whose message names the field and the fix.
"""
from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """Bad user input: ``field`` is what is wrong, ``fix`` says what to do instead."""

    def __init__(self, field: str, problem: str, fix: str | None = None):
        self.field = field
        self.problem = problem
        self.fix = fix
        msg = f"{field}: {problem}"
        if fix:
            msg += f" (fix: {fix})"
        super().__init__(msg)
