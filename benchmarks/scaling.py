"""Scaling-fit speed on the Chinchilla refit (Epoch AI's data, 5 highest-loss runs dropped).

Prints, measured side by side in one run: the refit from the best 64 grid starts, the same with
leave-one-out intervals, and (``--exhaustive``) the refit from every one of the 4,500 grid starts, with the
ratio of times and whether the exhaustive search found a better optimum.

    python benchmarks/scaling.py [--csv PATH] [--exhaustive]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import pandas as pd

from hf_optquant.scaling import FitSettings, fit_table

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "chinchilla_svg_extracted.csv"


def _timed(df, **settings):
    t = time.perf_counter()
    res, _ = fit_table(df, form="chinchilla", exclude_top_loss=5, settings=FitSettings(progress=False, **settings))
    return time.perf_counter() - t, res["all"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--csv", default=str(DEFAULT_CSV))
    p.add_argument("--exhaustive", action="store_true", help="also start L-BFGS from every grid point (slow)")
    args = p.parse_args()
    df = pd.read_csv(args.csv).rename(columns={"Model Size": "N", "Training FLOP": "flops"})[["N", "flops", "loss"]]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    t_fit, fit = _timed(df, loo=False)
    print(f"refit, 64 best grid starts:      {t_fit:7.2f} s  {fit['formula']}")
    t_loo, loo = _timed(df)
    print(f"refit + leave-one-out ({loo['n_points']} refits): {t_loo:7.2f} s  LOO RMSE {loo['loo_rmse']:.4f}")
    print("  95% LOO intervals: " + ", ".join(f"{k} [{v[0]:.4g}, {v[1]:.4g}]" for k, v in loo["ci"].items()))
    print("  Epoch AI published: A 482.01, B 2085.43, E 1.8172, alpha 0.3478, beta 0.3658")
    if args.exhaustive:
        t_all, full = _timed(df, loo=False, n_starts=None)
        print(f"refit, all 4500 grid starts:     {t_all:7.2f} s  {full['formula']}")
        print(f"ratio exhaustive / 64 starts: {t_all / t_fit:.1f}x; objective 64 starts {fit['objective']:.10g}, "
              f"exhaustive {full['objective']:.10g}")


if __name__ == "__main__":
    main()
