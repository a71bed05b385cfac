"""Which metric tracks post-PTQ quality across runs: Pearson and Spearman with bootstrap intervals."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..paper import PAPER_CORRELATION_TARGET, PAPER_CORRELATIONS

__all__ = ["METRICS", "LINEAR_METRICS", "correlation", "load_run", "correlate_records",
           "correlate_runs"]

# mmr, kurtosis: of the site each diagnosis names in ``outlier_site`` (residual stream by default, the paper's).
METRICS = ("mmr", "mmr_mean", "kurtosis", "kurtosis_channel_rms", "r_l")
# Per-linear-input variants, present when the runs were diagnosed with ``--outliers both``.
LINEAR_METRICS = ("mmr_linear", "mmr_mean_linear", "kurtosis_linear", "kurtosis_channel_rms_linear")


def correlation(x, y, n_boot: int = 1000, seed: int = 0) -> dict:
    """Pearson and Spearman of finite pairs, with percentile bootstrap 95% intervals (seeded)."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:  # ptp: a constant's std can be 1e-17, not 0
        return {"n": int(len(x)), "pearson": None, "spearman": None, "pearson_ci95": [None, None],
                "spearman_ci95": [None, None]}
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            boots.append((stats.pearsonr(x[i], y[i])[0], stats.spearmanr(x[i], y[i])[0]))
    boots = np.array(boots)
    ci = (np.nanpercentile(boots, [2.5, 97.5], axis=0).T.tolist() if len(boots) else [[None, None]] * 2)
    return {"n": int(len(x)), "pearson": float(stats.pearsonr(x, y)[0]),
            "spearman": float(stats.spearmanr(x, y)[0]), "pearson_ci95": ci[0], "spearman_ci95": ci[1]}


def load_run(path) -> dict:
    """A diagnose output dir (``summary.json``), with ``eval.json`` beside or inside it if present."""
    from ..io import read_json

    p = Path(path)
    summary = p / "summary.json" if p.is_dir() else p
    if not summary.is_file():
        raise ConfigError("runs", f"{path} has no summary.json", "give dirs written by `hf-optquant diagnose`")
    rec = read_json(summary)
    if not isinstance(rec, dict):
        from ..errors import EnvironmentFailure

        raise EnvironmentFailure(summary, "is not a diagnose summary (not a JSON object)",
                                 "rerun `hf-optquant diagnose` for that run")
    rec = dict(rec)
    for ev in (p / "eval.json", p.parent / "eval.json"):
        if ev.is_file():
            e = read_json(ev)
            rec.setdefault("mean_acc_norm", e.get("mean_acc_norm"))
            break
    rec["name"] = p.name if p.is_dir() else p.parent.name
    # Diagnoses written before the residual stream became the default measured every linear input.
    rec.setdefault("outlier_site", "linear" if rec.get("mmr") is not None else None)
    return rec


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan


def correlate_records(records, *, target: str = "delta_val_loss", n_boot: int = 1000, seed: int = 0) -> dict:
    """Each metric of ``records`` (dicts with ``name``, the metrics and ``target``) against ``target``; the
    paper's values beside (their target is accuracy).

    A metric whose correlation is undefined (constant across runs, or fewer than 3 finite values) is kept as
    null with a warning naming it.
    """
    import logging

    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ConfigError("n_boot", f"must be a positive number of bootstrap resamples, got {n_boot!r}",
                          "use --n-boot 1000")
    missing = [r["name"] for r in records if r.get(target) is None]
    if missing:
        raise ConfigError("target", f"{missing[0]} has no {target!r}",
                          "use --target delta_val_loss, or put an eval.json with mean_acc_norm beside each run")
    sites = {r.get("outlier_site") for r in records} - {None}
    if len(sites) > 1:
        odd = next(r["name"] for r in records if r.get("outlier_site") != records[0].get("outlier_site"))
        raise ConfigError("runs", f"{odd} measured MMR/kurtosis at another site than {records[0]['name']} "
                          f"({sorted(sites)})", "diagnose every run with the same --outliers (residual)")
    names = METRICS + tuple(m for m in LINEAR_METRICS if any(r.get(m) is not None for r in records))
    y = [_number(r[target]) for r in records]
    rows = [{"name": r["name"], target: r[target], **{m: r.get(m) for m in names}} for r in records]
    metrics = {}
    for m in names:
        res = correlation([_number(r.get(m)) for r in records], y, n_boot=n_boot, seed=seed)
        if res["pearson"] is None:
            logging.getLogger(__name__).warning(
                "correlate: %s has no correlation (%d finite values%s): reported as null", m, res["n"],
                ", constant across runs" if res["n"] >= 3 else "; at least 3 are needed")
        metrics[m] = {**res, "paper": PAPER_CORRELATIONS.get(m)}
    return {"target": target, "runs": rows, "paper_target": PAPER_CORRELATION_TARGET,
            "outlier_site": next(iter(sites), None), "metrics": metrics}


def correlate_runs(paths, *, target: str = "delta_val_loss", n_boot: int = 1000, seed: int = 0) -> dict:
    """:func:`correlate_records` over diagnose output dirs."""
    resolved = [Path(p).resolve() for p in paths]
    for i, p in enumerate(resolved):
        if p in resolved[:i]:
            raise ConfigError("runs", f"{paths[i]} is given more than once (a duplicate inflates the correlation)",
                              "give each diagnose output dir once")
    runs = [load_run(p) for p in paths]
    if len(runs) < 3:
        raise ConfigError("runs", f"{len(runs)} runs given; a correlation needs at least 3",
                          "pass three or more diagnose output dirs")
    y = [_number(r.get(target)) for r in runs]
    finite = [v for v in y if np.isfinite(v)]
    if all(r.get(target) is not None for r in runs) and (len(finite) < 3 or np.ptp(finite) == 0):
        # Every correlation would be null: refuse rather than write a table of nulls.
        raise ConfigError("target", f"{target} is {'the same for every run' if finite else 'not a number'} "
                          f"({len(finite)} finite values), so no correlation can be computed",
                          "give runs that differ in post-PTQ quality (e.g. different optimizers)")
    return correlate_records(runs, target=target, n_boot=n_boot, seed=seed)
