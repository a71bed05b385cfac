"""Study-level fits and correlations: scaling laws per optimizer (rho for QAT) and which
metric tracks PTQ degradation across optimizers."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..io import atomic_write_json, atomic_write_text, read_json
from ..metrics.correlate import correlate_records
from ..scaling import FitSettings, fit_results_table
from .checkpoint_selection import selected_fp_run
from .config import RunSpec, StudyConfig
from .runs import run_dir

__all__ = ["qat_precision_label", "scaling_table", "fit_step", "correlate_step"]


def qat_precision_label(qat) -> str:
    """The results table's precision label of the QAT runs: ``4bit`` for W4A4 (the paper's, and the label
    published results use), ``w4a8`` / ``w4a16`` when weights and activations differ."""
    w, a = qat.scheme.w_bits, qat.scheme.a_bits
    if a == w:
        return f"{w}bit"
    return f"w{w}a{16 if a is None else a}"


def scaling_table(cfg: StudyConfig):
    """One row per (optimizer, size, precision): N, D, final eval loss."""
    import pandas as pd

    rows, label = [], qat_precision_label(cfg.qat)
    for size in cfg.sizes:
        for opt in cfg.optimizers:
            specs = [selected_fp_run(cfg, opt, size)]
            if "qat" in cfg.precisions:
                specs.append(RunSpec(optimizer=opt, size=size, precision="qat", lr=None))
            for spec in specs:
                rec = read_json(run_dir(cfg, spec) / "run.json")
                rows.append({"optimizer": opt, "size": size, "precision": label if spec.precision == "qat" else "full",
                             "N": rec["n_params"], "D": rec["tokens_seen"], "loss": rec["final_eval_loss"]})
    return pd.DataFrame(rows)


def fit_step(cfg: StudyConfig) -> None:
    out = Path(cfg.output_dir) / "analysis" / "fit.json"
    if out.exists():
        return
    table = scaling_table(cfg)
    fits_dir = Path(cfg.output_dir) / "fits"
    fits_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(fits_dir / "scaling_points.csv", table.to_csv(index=False))
    form = cfg.fit_form
    try:
        res = fit_results_table(table, form=form, out_json=fits_dir / "fit.json", out_png=fits_dir / "fit.png",
                                settings=FitSettings(progress=False))
    except ConfigError as exc:  # e.g. too few sizes for the form: the report says why, the study goes on
        atomic_write_json(out, {"available": False, "reason": f"{form} fit not possible: {exc}"})
        return
    atomic_write_json(out, {"available": True, "form": form, "qat_precision": qat_precision_label(cfg.qat),
                            "fits": res})


def correlate_step(cfg: StudyConfig) -> None:
    """Across all (optimizer, size) runs: each metric against the post-PTQ loss increase."""
    a = Path(cfg.output_dir) / "analysis"
    out = a / "correlations.json"
    if out.exists():
        return
    tag = cfg.ptq[0].tag
    records = []
    for size in cfg.sizes:
        for opt in cfg.optimizers:
            spec = selected_fp_run(cfg, opt, size)
            ptq = read_json(a / spec.run_id / "ptq.json")
            diag = read_json(a / spec.run_id / "diagnose.json")
            records.append({**diag, "name": spec.run_id, "delta_val_loss": ptq["ptq"][tag]["delta_val_loss"]})
    atomic_write_json(out, {"ptq": tag, **correlate_records(records, target="delta_val_loss")})
