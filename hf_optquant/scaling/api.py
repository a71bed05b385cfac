"""Fit every optimizer's group of a results table and write the JSON (and plot)."""
from __future__ import annotations

from pathlib import Path

from ..io import atomic_write_json
from .fit import FitSettings, fit_points
from .table import groups, load_table, validate_table

__all__ = ["fit_table", "fit_results_table"]


def fit_table(table, *, form: str = "reduced", settings: FitSettings | None = None, exclude_top_loss: int = 0,
              rename: dict[str, str] | None = None) -> tuple[dict, list]:
    """``({optimizer: result dict}, [(optimizer, law, frame)])`` for a table, path or dataset."""
    df = validate_table(load_table(table, rename=rename), exclude_top_loss=exclude_top_loss)
    results, fitted = {}, []
    for opt, pts, precs, frame in groups(df, form):
        res = fit_points(form, pts, precs, settings, label=opt)
        results[opt] = res.to_dict()
        fitted.append((opt, res.law, frame))
    return results, fitted


def fit_results_table(table, *, form: str = "reduced", out_json: str | Path | None = None,
                      out_png: str | Path | None = None, settings: FitSettings | None = None,
                      exclude_top_loss: int = 0, rename: dict[str, str] | None = None) -> dict:
    """Fit per optimizer; write ``out_json`` (``{optimizer: {form, params, ci, loo_rmse, n_points, ...}}``)
    and the plot ``out_png`` when given. Nothing is written unless every fit succeeds."""
    results, fitted = fit_table(table, form=form, settings=settings, exclude_top_loss=exclude_top_loss,
                                rename=rename)
    if out_png is not None:
        from .plot import plot_fits

        plot_fits(fitted, out_png)
    if out_json is not None:
        atomic_write_json(out_json, results)
    return results
