"""One writer per output: an exclusive lock file that names its holder.

``flock`` locks belong to the process that holds the open file: the kernel drops them when it
exits, however it exits, so a lock file left by a killed process (a dead pid in it) is simply
taken over. Linux emulates ``flock`` with POSIX locks on NFS, so this also holds across nodes
that share the output directory.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError

__all__ = ["exclusive_lock"]


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError):
        words = path.read_text().split()
        if len(words) >= 2 and words[0].isdigit():
            return f"pid {words[0]} on {words[1]}"
    return "a process that has not written its pid yet"


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, *, what: str, field: str = "output_dir") -> Iterator[Path]:
    """Hold ``path`` (created if missing) for the duration; if another process holds it, raise
    ``ConfigError`` naming its pid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(field, f"{path.parent} is in use by another {what} ({_holder(path)})",
                              f"wait for it to finish, or use another {field}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with a new holder)
