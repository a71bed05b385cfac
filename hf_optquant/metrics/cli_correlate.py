"""``hf-optquant correlate RUN_DIR... --out DIR [--target delta_val_loss|mean_acc_norm]``."""
from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="diagnose output dirs (one per run, e.g. one per optimizer)")
    p.add_argument("--out", required=True, help="output dir: correlations.json, correlations.csv, scatter.png")
    p.add_argument("--target", default="delta_val_loss",
                   help="post-PTQ quality: delta_val_loss (from diagnose) or mean_acc_norm (eval.json beside)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")


def run(args) -> int:
    import pandas as pd

    from ..io import OUT_EXISTS_FIX, atomic_dir, atomic_write_json, refuse_existing_output
    from .correlate import correlate_runs
    from .plots import plot_correlations

    # before reading the runs, not after
    refuse_existing_output(args.out, overwrite=args.overwrite, fix=OUT_EXISTS_FIX)
    res = correlate_runs(args.runs, target=args.target, n_boot=args.n_boot, seed=args.seed)
    with atomic_dir(args.out, overwrite=args.overwrite, fix=OUT_EXISTS_FIX) as tmp:
        atomic_write_json(tmp / "correlations.json", res)
        pd.DataFrame([{"metric": k, **{f: v[f] for f in ("n", "pearson", "spearman", "paper")},
                       "pearson_lo": v["pearson_ci95"][0], "pearson_hi": v["pearson_ci95"][1]}
                      for k, v in res["metrics"].items()]).to_csv(tmp / "correlations.csv", index=False)
        plot_correlations(res, tmp / "scatter.png")
    for k, v in res["metrics"].items():
        print(f"{k:>22}: Pearson {v['pearson']}, Spearman {v['spearman']} (paper {v['paper']})")
    return 0
