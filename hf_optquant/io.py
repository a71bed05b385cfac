"""Atomic output: every file and directory hf_optquant writes appears whole or not at all."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["check_output_path", "atomic_dir", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "read_json"]


def check_output_path(path: str | os.PathLike, field: str = "out") -> Path:
    """Refuse, before any work, an output path that can never be created (an ancestor is a file)."""
    p = Path(path)
    for parent in (p.parent, *p.parent.parents):
        if parent.exists():
            if not parent.is_dir():
                from .errors import ConfigError

                raise ConfigError(field, f"{parent} is a file, so {p} cannot be created",
                                  "choose an output path inside a directory")
            break
    return p


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The parsed file; a damaged one (truncated, binary, not JSON) is an EnvironmentFailure naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        from .errors import EnvironmentFailure

        raise EnvironmentFailure(path, f"damaged JSON ({str(exc).splitlines()[0][:120]})",
                                 "delete it and rerun the command that writes it") from None


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``path`` in one rename.

    On any exception the temporary directory is removed and ``path`` is untouched, so an
    existing output is never half-overwritten.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        from .errors import ConfigError

        raise ConfigError("out", f"{path} already exists", "choose a new output directory or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
