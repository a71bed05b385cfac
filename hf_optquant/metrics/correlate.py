"""Which metric tracks post-PTQ quality across runs: Pearson and Spearman with bootstrap intervals."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["PAPER_CORRELATIONS", "METRICS", "LINEAR_METRICS", "correlation", "load_run", "correlate_records",
           "correlate_runs"]

# The paper (760M, across optimizers): correlation of each metric with post-PTQ accuracy.
PAPER_CORRELATIONS = {"mmr": 0.62, "kurtosis": 0.70, "r_l": -0.89}
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
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return {"n": int(len(x)), "pearson": None, "spearman": None, "pearson_ci95": [None, None],
                "spearman_ci95": [None, None]}
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        if np.std(x[i]) > 0 and np.std(y[i]) > 0:
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
    rec = dict(read_json(summary))
    for ev in (p / "eval.json", p.parent / "eval.json"):
        if ev.is_file():
            e = read_json(ev)
            rec.setdefault("mean_acc_norm", e.get("mean_acc_norm"))
            break
    rec["name"] = p.name if p.is_dir() else p.parent.name
    # Diagnoses written before the residual stream became the default measured every linear input.
    rec.setdefault("outlier_site", "linear" if rec.get("mmr") is not None else None)
    return rec


def correlate_records(records, *, target: str = "delta_val_loss", n_boot: int = 1000, seed: int = 0) -> dict:
    """Each metric of ``records`` (dicts with ``name``, the metrics and ``target``) against ``target``; the
    paper's values beside (their target is accuracy)."""
    missing = [r["name"] for r in records if r.get(target) is None]
    if missing:
        raise ConfigError("target", f"{missing[0]} has no {target!r}",
                          "use --target delta_val_loss, or put an eval.json with mean_acc_norm beside each run")
    sites = {r.get("outlier_site") for r in records} - {None}
    if len(sites) > 1:
        odd = next(r["name"] for r in records if r.get("outlier_site") != records[0].get("outlier_site"))
        raise ConfigError("runs", f"{odd} measured MMR/kurtosis at another site than {records[0]['name']} "
                          f"({sorted(sites)})", "diagnose every run with the same --outliers (residual)")
    metrics = METRICS + tuple(m for m in LINEAR_METRICS if any(r.get(m) is not None for r in records))
    y = [r[target] for r in records]
    rows = [{"name": r["name"], target: r[target], **{m: r.get(m) for m in metrics}} for r in records]
    return {"target": target, "runs": rows, "paper_target": "post-PTQ zero-shot accuracy (760M)",
            "outlier_site": next(iter(sites), None),
            "metrics": {m: {**correlation([r.get(m) if r.get(m) is not None else np.nan for r in records], y,
                                          n_boot=n_boot, seed=seed),
                            "paper": PAPER_CORRELATIONS.get(m)} for m in metrics}}


def correlate_runs(paths, *, target: str = "delta_val_loss", n_boot: int = 1000, seed: int = 0) -> dict:
    """:func:`correlate_records` over diagnose output dirs."""
    runs = [load_run(p) for p in paths]
    if len(runs) < 3:
        raise ConfigError("runs", f"{len(runs)} runs given; a correlation needs at least 3",
                          "pass three or more diagnose output dirs")
    return correlate_records(runs, target=target, n_boot=n_boot, seed=seed)
