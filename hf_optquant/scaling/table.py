"""Results tables in, validated fitting groups out.

A table has columns ``N``, ``D`` (or ``flops``, with D = flops / (6 N)), ``loss`` and optionally
``optimizer`` and ``precision``. It may be a pandas DataFrame, a ``datasets.Dataset``, or a path to a CSV,
parquet or JSON(L) file, a ``Dataset.save_to_disk`` directory, or (online) a Hub dataset repo id.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .laws import FULL_PRECISION, SPECS
from .objective import Points

__all__ = ["load_table", "validate_table", "groups"]

_ALL = "all"


def load_table(source, *, rename: dict[str, str] | None = None):
    """A pandas DataFrame from any accepted source, with ``rename`` applied to column names."""
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        df = source.copy()
    elif hasattr(source, "to_pandas"):
        df = source.to_pandas()
    else:
        path = Path(str(source))
        suffix = path.suffix.lower()
        try:
            df = _read_path(path, suffix, source)
        except ConfigError:
            raise
        except (ValueError, UnicodeDecodeError, ImportError, pd.errors.ParserError) as exc:
            # pandas raises EmptyDataError/ParserError/UnicodeDecodeError for empty, binary or ragged files.
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise ConfigError("results", f"cannot read {path} as a {suffix.lstrip('.') or 'results'} table "
                              f"({type(exc).__name__}: {first})",
                              "give a table with a header line, e.g. N,D,loss (CSV, parquet or JSON lines)") from None
    if df.empty or len(df.columns) == 0:
        raise ConfigError("results", f"{source!s} has no rows", "give a table with one row per run: N, D, loss")
    if rename:
        missing = [k for k in rename if k not in df.columns]
        if missing:
            raise ConfigError("rename", f"no column {missing[0]!r} to rename; the table has {list(df.columns)}",
                              "name an existing column, e.g. --rename 'Model Size=N'")
        df = df.rename(columns=rename)
    return df


def _read_path(path: Path, suffix: str, source):
    import pandas as pd

    if path.is_dir():
        from datasets import load_from_disk

        return load_from_disk(str(path)).to_pandas()
    if path.is_file() and suffix == ".csv":
        return pd.read_csv(path)
    if path.is_file() and suffix == ".parquet":
        return pd.read_parquet(path)
    if path.is_file() and suffix in (".json", ".jsonl"):
        return pd.read_json(path, lines=suffix == ".jsonl")
    if not path.exists() and str(source).count("/") == 1 and not suffix:
        from datasets import load_dataset  # a Hub dataset repo id (needs network)

        return load_dataset(str(source), split="train").to_pandas()
    raise ConfigError("results", f"cannot read {source!s}",
                      "give a .csv, .parquet or .json(l) file, a saved datasets dir, or a Hub dataset id")


def validate_table(df, *, exclude_top_loss: int = 0):
    """Columns present, values finite and positive; D derived from flops; top-loss rows dropped per optimizer."""
    import pandas as pd

    df = df.copy()
    if "D" not in df.columns and "flops" in df.columns and "N" in df.columns:
        df["D"] = df["flops"] / (6.0 * df["N"])
    for col in ("N", "D", "loss"):
        if col not in df.columns:
            fix = "add a D column or a flops column (D = flops / 6N)" if col == "D" else f"add a {col} column"
            raise ConfigError(col, f"missing column {col!r} (the table has {list(df.columns)})",
                              fix + ", or map yours with --rename OLD=NEW")
        values = np.asarray(pd.to_numeric(df[col], errors="coerce"), dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ConfigError(col, f"row {row} is {df[col].iloc[row]!r}: not a finite number",
                              "drop or fix that row")
        if (values <= 0).any():
            raise ConfigError(col, f"row {int(np.flatnonzero(values <= 0)[0])} is {values[values <= 0][0]:g}; "
                              f"{col} must be positive", "drop or fix that row")
        df[col] = values
    if "optimizer" not in df.columns:
        df["optimizer"] = _ALL
    if "precision" not in df.columns:
        df["precision"] = FULL_PRECISION
    df["optimizer"] = df["optimizer"].astype(str)
    df["precision"] = df["precision"].astype(str)
    if not isinstance(exclude_top_loss, int) or exclude_top_loss < 0:
        raise ConfigError("exclude_top_loss", f"must be an integer >= 0, got {exclude_top_loss!r}", "use 0 or 5")
    if exclude_top_loss:
        # rank 1 = highest loss within the optimizer's rows
        rank = df.groupby("optimizer", sort=False)["loss"].rank(method="first", ascending=False)
        df = df[rank > exclude_top_loss]
    return df.reset_index(drop=True)


def groups(df, form: str):
    """``[(optimizer, Points, precisions, frame)]``, one per optimizer, validated for ``form``."""
    out = []
    for opt, g in df.groupby("optimizer", sort=True):
        precs = sorted(p for p in g["precision"].unique() if p != FULL_PRECISION)
        if precs and not SPECS[form].rho:
            raise ConfigError("precision", f"{opt}: rows in precision {precs[0]!r} but the chinchilla form has "
                              "no rho", "use --form precision or --form reduced, or keep only full-precision rows")
        if precs and FULL_PRECISION not in set(g["precision"]):
            raise ConfigError("precision", f"{opt}: no {FULL_PRECISION!r} rows, so rho has no reference",
                              f"add full-precision runs (precision = {FULL_PRECISION!r})")
        idx = np.array([precs.index(p) if p != FULL_PRECISION else -1 for p in g["precision"]])
        pts = Points(np.log(g["N"].to_numpy(float)), np.log(g["D"].to_numpy(float)),
                     np.log(g["loss"].to_numpy(float)), idx)
        out.append((opt, pts, precs, g))
    if not out:
        raise ConfigError("results", "the table has no rows left to fit", "check --exclude-top-loss and the input")
    return out
