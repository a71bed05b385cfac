"""Turn an exception that escaped a command into ``(exit code, one line)``.

:class:`~hf_optquant.errors.ConfigError` is handled by the CLI itself (exit 2). Everything here is either
the environment failing (exit 3: disk full, read-only filesystem, permissions, network, Hub server errors,
damaged files) or a bug (exit 1). The line names the path or endpoint and the cause; the traceback is
only shown with ``-v``.
"""
from __future__ import annotations

import errno
import os

from .errors import ENVIRONMENT_EXIT, INTERNAL_EXIT, EnvironmentFailure

__all__ = ["describe_failure", "environment_failure"]

_ERRNO_FIX = {
    errno.ENOSPC: "free disk space (or write elsewhere) and run the same command again",
    errno.EDQUOT: "free space within your quota and run the same command again",
    errno.EROFS: "write to a writable location (the filesystem is read-only)",
    errno.EACCES: "check the permissions of that path, or write elsewhere",
    errno.EPERM: "check the permissions of that path, or write elsewhere",
    errno.ENOENT: "check that the path exists (it may have been removed while the command ran)",
    errno.EIO: "the disk reported an I/O error: check the device",
}
# Libraries whose exceptions mean "the network or a remote server failed" (not the user's input).
_NETWORK_MODULES = ("httpx", "httpcore", "requests", "urllib3", "huggingface_hub", "http.client", "socket", "ssl")


def environment_failure(exc: BaseException) -> EnvironmentFailure | None:
    """The :class:`EnvironmentFailure` for ``exc`` if it is one (OSError, network, damaged file), else None."""
    if isinstance(exc, EnvironmentFailure):
        return exc
    module = type(exc).__module__ or ""
    if type(exc).__name__ == "SafetensorError" or module.startswith("safetensors"):
        return EnvironmentFailure("model.safetensors", f"damaged safetensors file ({_first(exc)})",
                                  "re-create or re-download the checkpoint")
    if isinstance(exc, OSError) and getattr(exc, "errno", None) in _ERRNO_FIX:
        path = os.path.abspath(exc.filename) if exc.filename else "(unknown path)"
        return EnvironmentFailure(path, exc.strerror or _first(exc), _ERRNO_FIX[exc.errno])
    if module.startswith(_NETWORK_MODULES) or isinstance(exc, (ConnectionError, TimeoutError)):
        return EnvironmentFailure(_url(exc), f"network or server failure ({type(exc).__name__}: {_first(exc)})",
                                  "check the network and the endpoint, then run the same command again")
    if isinstance(exc, OSError):
        path = getattr(exc, "filename", None) or "(unknown path)"
        return EnvironmentFailure(path, f"{type(exc).__name__}: {exc.strerror or _first(exc)}",
                                  "check that path, then run the same command again")
    return None


def describe_failure(exc: BaseException) -> tuple[int, str]:
    env = environment_failure(exc)
    if env is not None:
        return ENVIRONMENT_EXIT, str(env)
    return INTERNAL_EXIT, (f"internal error {type(exc).__name__}: {_first(exc)} (fix: none known; rerun with -v "
                           "for the traceback and report it)")


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _url(exc: BaseException) -> str:
    for obj in (getattr(exc, "request", None), getattr(getattr(exc, "response", None), "request", None)):
        try:
            if obj is not None and getattr(obj, "url", None):
                return str(obj.url)
        except Exception:  # httpx raises when a request was never attached
            continue
    return "the network"
