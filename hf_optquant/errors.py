"""Two exception types for the two kinds of failure a user can fix.

* :class:`ConfigError`: bad user input (a flag, a YAML field, a file that is not what the command needs).
  The CLI prints it as one line and exits with :data:`USAGE_EXIT` (2).
* :class:`EnvironmentFailure`: the command was right but the world was not (disk full, read-only
  filesystem, network or Hub server down, a damaged file). One line naming the path and the cause, exit
  :data:`ENVIRONMENT_EXIT` (3), so scripts can tell "fix the command" from "retry / repair the machine".

Library callers get normal exceptions whose message names the field (or path) and the fix.
"""
from __future__ import annotations

__all__ = ["ConfigError", "EnvironmentFailure", "unknown_key_error", "USAGE_EXIT", "ENVIRONMENT_EXIT", "INTERNAL_EXIT"]

USAGE_EXIT = 2
ENVIRONMENT_EXIT = 3
INTERNAL_EXIT = 1  # a bug of hf_optquant: one line, the traceback with -v


def _one_line(subject: str, problem: str, fix: str | None) -> str:
    return f"{subject}: {problem}" + (f" (fix: {fix})" if fix else "")


class ConfigError(ValueError):
    """Bad user input: ``field`` is what is wrong, ``fix`` says what to do instead."""

    def __init__(self, field: str, problem: str, fix: str | None = None):
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(_one_line(field, problem, fix))


class EnvironmentFailure(OSError):
    """The environment failed: ``path`` (a file, directory or URL) and the ``cause``; ``fix`` if one is known."""

    def __init__(self, path: str, cause: str, fix: str | None = None):
        self.path = str(path)
        self.cause = cause
        self.fix = fix
        super().__init__(_one_line(self.path, cause, fix))

    def __str__(self) -> str:  # OSError's own __str__ would format errno/strerror
        return self.args[0]


def unknown_key_error(key, names, *, field: str | None = None, where: str | None = None, what: str = "key",
                      fallback_fix: str | None = None) -> ConfigError:
    """The error for a config key (or CLI option) that is not one of ``names``: the closest name as the fix
    ("did you mean ...?"), else ``fallback_fix``, else the list of names. ``field`` defaults to the key."""
    import difflib

    names = list(names)
    close = difflib.get_close_matches(str(key), names, n=1)
    fix = f"did you mean {close[0]!r}?" if close else fallback_fix or f"use one of {', '.join(sorted(names))}"
    return ConfigError(str(key) if field is None else field, f"unknown {what}" + (f" in {where}" if where else ""), fix)
