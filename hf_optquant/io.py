"""Atomic output: every file and directory hf_optquant writes appears whole or not at all.

Temporaries are hidden siblings named ``.NAME.h<host>p<pid>.<random>.partial`` (directories) or
``.tmp`` (files), created with the user's umask (``tempfile`` would make them 0700/0600). A kill
leaves them behind; the next write of the same NAME removes those whose process on this host is
gone (``clean_stale_partials``), so nothing piles up and nothing in use is touched.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import socket
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["check_output_path", "refuse_existing_output", "output_exists_error", "EXISTS_FIX", "OUT_EXISTS_FIX",
           "atomic_dir", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "read_json",
           "clean_stale_partials"]

_TEMP = re.compile(r"^\.(?P<name>.+)\.h(?P<host>[0-9a-f]{8})p(?P<pid>\d+)\.[0-9a-f]{8}\.(?:partial|tmp)$")


def _host() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def _temp_name(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.h{_host()}p{os.getpid()}.{secrets.token_hex(4)}.{kind}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_stale_partials(parent: str | os.PathLike, name: str | None = None, *, recursive: bool = False) -> list[Path]:
    """Remove temporaries under ``parent`` (of ``name`` only, if given) left by dead processes on this host."""
    parent, host, removed = Path(parent), _host(), []
    if not parent.is_dir():
        return removed
    entries = (p for p in parent.rglob(".*") if p.name.endswith((".partial", ".tmp"))) if recursive \
        else (p for p in parent.iterdir() if p.name.startswith("."))
    for p in list(entries):
        m = _TEMP.match(p.name)
        if not m or m["host"] != host or (name is not None and m["name"] != name) or _alive(int(m["pid"])):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p)
    return removed


def _rename_noreplace(src: Path, dst: Path) -> None:
    """``rename`` that fails with ``FileExistsError`` when ``dst`` exists, atomically where the kernel can.

    Written by hand: Python's ``os.rename`` replaces an empty directory (and a file on POSIX); Linux's
    ``renameat2(RENAME_NOREPLACE)`` does not. Elsewhere (or on filesystems without it) the existence
    check and the rename are two steps.
    """
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if os.name == "posix" else None
    if fn is not None:
        at_fdcwd, rename_noreplace = -100, 1
        if fn(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), rename_noreplace) == 0:
            return
        err = ctypes.get_errno()
        if err in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(err, os.strerror(err), str(dst))
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), str(dst))
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


# The fix for a library call, and for a command whose output option is --out.
EXISTS_FIX = "choose a new output directory or pass --overwrite"
OUT_EXISTS_FIX = "choose a new --out or pass --overwrite"


def output_exists_error(path: str | os.PathLike, when: str = "", *, field: str = "out", fix: str = EXISTS_FIX):
    """The one "output already exists" error: ``field`` and ``fix`` name the command's own option."""
    from .errors import ConfigError

    return ConfigError(field, f"{path} already exists{when}", fix)


def refuse_existing_output(path: str | os.PathLike, *, overwrite: bool = False, field: str = "out",
                           fix: str = EXISTS_FIX) -> Path:
    """Before any work: refuse an output path that cannot be created (``check_output_path``) or that exists
    and may not be replaced. ``atomic_dir`` refuses again at the final rename, for an output that appears
    while the command runs."""
    p = check_output_path(path, field)
    if os.path.lexists(p) and not overwrite:
        raise output_exists_error(p, field=field, fix=fix)
    return p


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
    clean_stale_partials(path.parent, path.name)
    tmp = _temp_name(path, "tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask, as open() would
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


def _restore_interrupted_overwrite(path: Path) -> None:
    """A kill between the two renames of an overwrite leaves the old output in ``.NAME.old``: put it back."""
    old = path.with_name(f".{path.name}.old")
    if not os.path.lexists(old):
        return
    if os.path.lexists(path):
        shutil.rmtree(old, ignore_errors=True)
    else:
        with contextlib.suppress(FileExistsError, FileNotFoundError):
            _rename_noreplace(old, path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False, field: str = "out",
               fix: str = EXISTS_FIX) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``path`` in one rename.

    On any exception the temporary directory is removed and ``path`` is untouched, so an
    existing output is never half-overwritten. Without ``overwrite`` an output that appeared
    meanwhile (e.g. a second command writing the same ``--out``) is not replaced either: the
    final rename refuses it. ``field`` and ``fix`` word that refusal for the calling command.
    """
    path = Path(path)
    _restore_interrupted_overwrite(path)
    if os.path.lexists(path) and not overwrite:
        raise output_exists_error(path, field=field, fix=fix)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(path.parent, path.name)
    tmp = _temp_name(path, "partial")
    os.mkdir(tmp)  # 0o777 & ~umask, unlike tempfile.mkdtemp's 0700
    try:
        yield tmp
        if overwrite and os.path.lexists(path):
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                _rename_noreplace(tmp, path)
            except FileExistsError:
                raise output_exists_error(path, " (it appeared while this command ran; nothing was replaced)",
                                          field=field, fix=fix) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
