"""``hf-optquant fit RESULTS --form chinchilla|precision|reduced [--huber-delta 1e-3] [--exclude-top-loss K]
--out fit.json``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError
from .fit import FitSettings
from .laws import SPECS

__all__ = ["add_arguments", "run"]


def _rename(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        old, sep, new = item.rpartition("=")
        if not sep or not old or not new:
            raise ConfigError("rename", f"{item!r} is not OLD=NEW", "e.g. --rename 'Model Size=N'")
        out[old] = new
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help="results table: .csv, .parquet, .json(l), a saved datasets dir or a Hub "
                                   "dataset id; columns N, D (or flops), loss [, optimizer, precision]")
    p.add_argument("--form", default="reduced", choices=tuple(SPECS),
                   help="chinchilla: E + A/N^a + B/D^b; precision: with (N rho)^a; reduced: E + A'/(N rho)^a")
    p.add_argument("--out", required=True, help="fit JSON to write (a PNG of the fits goes beside it)")
    p.add_argument("--huber-delta", type=float, default=1e-3, help="Huber delta on log-residuals")
    p.add_argument("--exclude-top-loss", type=int, default=0, help="drop the K highest-loss rows per optimizer")
    p.add_argument("--n-starts", type=int, default=64,
                   help="L-BFGS starts from the best grid points (0: every grid point)")
    p.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples for extra intervals")
    p.add_argument("--no-loo", action="store_true", help="skip leave-one-out intervals")
    p.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                   help="map a column name, e.g. --rename 'Model Size=N' --rename 'Training FLOP=flops'")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from .api import fit_results_table

    out = Path(args.out)
    if out.suffix.lower() != ".json":
        raise ConfigError("out", f"{out} is not a .json path", "e.g. --out fits/fit.json")
    from ..io import check_output_path

    check_output_path(out)
    settings = FitSettings(huber_delta=args.huber_delta, n_starts=args.n_starts or None, loo=not args.no_loo,
                           bootstrap=args.bootstrap, seed=args.seed)
    res = fit_results_table(args.results, form=args.form, out_json=out, out_png=out.with_suffix(".png"),
                            settings=settings, exclude_top_loss=args.exclude_top_loss, rename=_rename(args.rename))
    for opt, r in res.items():
        print(f"{opt}: {r['formula']}  (LOO RMSE {r['loo_rmse'] if r['loo_rmse'] is None else round(r['loo_rmse'], 5)}"
              f", {r['n_points']} points)")
    print(json.dumps({"written": [str(out), str(out.with_suffix('.png'))]}))
    return 0
