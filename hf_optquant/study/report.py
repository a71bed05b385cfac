"""``report.md``, plots and ``results.parquet`` of a study, built from the stored records only."""
from __future__ import annotations

import json
import math
from importlib import metadata
from pathlib import Path

from ..io import atomic_write_text
from ..paper import PAPER_CORRELATIONS, PAPER_FP_ACC, PAPER_PTQ_ACC, PAPER_QAT_DROP, PAPER_RHO
from ..qat.config import read_qat_record
from ..results import normalize_results
from .analysis import load_records
from .checkpoint_selection import selected_fp_run
from .config import StudyConfig

__all__ = ["write_report", "results_frame"]

# How the report's prose names the optimizers and metrics.
_NAMES = {"adamw": "AdamW", "muon": "Muon", "psgd": "PSGD", "scion": "Scion", "shampoo": "Shampoo", "soap": "SOAP"}
_METRIC_LABELS = {"mmr": "MMR", "kurtosis": "kurtosis", "r_l": "R_L"}


def _cell(v, digits=4) -> str:
    """A table cell: floats at ``digits`` decimals, anything missing as ``n/a``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _paper_table(table: dict, opts: list[str]) -> str:
    """One of the paper's size x optimizer tables, restricted to this study's optimizers."""
    rows = [[size] + [_cell(table[size].get(o), 2) if o in table[size] else "-" for o in opts] for size in table]
    return _table(["paper size"] + opts, rows)


def _winners(cfg: StudyConfig, pick, key) -> str:
    """``size: **optimizer**`` for each size, the optimizer chosen by ``pick`` (min or max) of ``key(o, size)``."""
    return ", ".join(f"{size}: **{pick(cfg.optimizers, key=lambda o: key(o, size))}**" for size in cfg.sizes)


# Results table: one row per run in the schema of hf_optquant.results.

def _base_row(cfg: StudyConfig, opt: str, size: str, run: dict, version: str) -> dict:
    """The columns every row of a training run shares, from its ``run.json``."""
    return {"study": cfg.name, "optimizer": opt, "model_size": size, "n_params": run["n_params"],
            "n_params_non_embedding": run["n_params_non_embedding"], "tokens": run["tokens_seen"],
            "learning_rate": run["learning_rate"], "final_train_loss": run["final_train_loss"],
            "wall_time_s": run.get("wall_time_s"), "hf_optquant_version": version,
            "versions": json.dumps(run.get("versions", {}), sort_keys=True)}


def _full_precision_rows(cfg: StudyConfig, rec: dict, opt: str, size: str, base: dict) -> list[dict]:
    """The full-precision run's row, then one row per PTQ setting of its Common-Loss checkpoint."""
    run_id = f"{cfg.name}/{selected_fp_run(cfg, opt, size).run_id}"
    loss = rec["runs"][(opt, size, "full")]["final_eval_loss"]
    rows = [{**base, "run_id": run_id, "precision": "full", "method": "none", "val_loss": loss,
             "val_ppl": math.exp(loss)}]
    ptq, diag = rec["ptq"][(opt, size)], rec["diag"][(opt, size)]
    for tag, q in ptq["ptq"].items():
        c = q["config"]
        rows.append({**base, "run_id": f"{run_id}/{tag}", "precision": "ptq", "method": c["method"],
                     "w_bits": c["w_bits"], "a_bits": c["a_bits"], "granularity": c["granularity"],
                     "common_loss": ptq["common_loss"], "tokens": ptq["checkpoint"]["tokens"],
                     "val_loss": q["val_loss"], "val_ppl": q["val_ppl"],
                     "parent_run_id": run_id, "delta_val_loss": q["delta_val_loss"],
                     "mmr": diag.get("mmr"), "mmr_mean": diag.get("mmr_mean"),
                     "kurtosis": diag.get("kurtosis"), "kurtosis_channel_rms": diag.get("kurtosis_channel_rms"),
                     "r_l": diag.get("r_l")})
    return rows


def _qat_row(cfg: StudyConfig, rec: dict, opt: str, size: str, base: dict) -> dict:
    q, qat = rec["qat"][(opt, size)], read_qat_record(rec["runs"][(opt, size, "qat")])
    return {**base, "run_id": f"{cfg.name}/{opt}-{size}-qat", "precision": "qat",
            "method": f"{qat.quantizer}-qat", "w_bits": qat.scheme.w_bits,
            "a_bits": qat.scheme.a_bits, "granularity": qat.scheme.granularity,
            "val_loss": q["val_loss"], "val_ppl": math.exp(q["val_loss"]),
            "parent_run_id": f"{cfg.name}/{selected_fp_run(cfg, opt, size).run_id}",
            "delta_val_loss": q["delta_val_loss"]}


def results_frame(cfg: StudyConfig, rec: dict):
    """Rows in the results schema (hf_optquant.results): FP final, PTQ at CL, QAT."""
    import pandas as pd

    version = metadata.version("hf_optquant")
    rows = []
    for (opt, size, prec), run in rec["runs"].items():
        base = _base_row(cfg, opt, size, run, version)
        if prec == "full":
            rows += _full_precision_rows(cfg, rec, opt, size, base)
        else:
            rows.append(_qat_row(cfg, rec, opt, size, base))
    return normalize_results(pd.DataFrame(rows), source="study results")


# Plots: each draws one figure from the records and returns the file names it wrote.

def _plot_loss_curves(plt, cfg: StudyConfig, rec: dict, out: Path) -> list[str]:
    """Validation loss along training, per optimizer, at the largest size."""
    size = cfg.sizes[-1]
    fig, ax = plt.subplots(figsize=(6, 4))
    for opt in cfg.optimizers:
        hist = rec["runs"][(opt, size, "full")]["log_history"]
        pts = [(h["step"], h["eval_loss"]) for h in hist if "eval_loss" in h]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=opt)
    ax.set(xlabel="step", ylabel="validation loss", title=f"Full precision, {size}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=110)
    plt.close(fig)
    return ["loss_curves.png"]


def _plot_degradation(plt, cfg: StudyConfig, rec: dict, out: Path) -> list[str]:
    """PTQ and QAT loss increase per optimizer and size, as bars."""
    tag = cfg.ptq[0].tag
    fig, axes = plt.subplots(1, 2 if rec["qat"] else 1, figsize=(10, 4), squeeze=False)
    width = 0.8 / len(cfg.sizes)
    for j, size in enumerate(cfg.sizes):
        xs = [i + j * width for i in range(len(cfg.optimizers))]
        axes[0][0].bar(xs, [rec["ptq"][(o, size)]["ptq"][tag]["delta_val_loss"] for o in cfg.optimizers],
                       width, label=size)
        if rec["qat"]:
            axes[0][1].bar(xs, [100 * rec["qat"][(o, size)]["relative_val_loss"] for o in cfg.optimizers],
                           width, label=size)
    axes[0][0].set(title=f"PTQ {tag} at Common Loss", ylabel="val-loss increase")
    if rec["qat"]:
        axes[0][1].set(title="QAT vs full precision", ylabel="relative val-loss increase (%)")
    for ax in axes[0]:
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cfg.optimizers))], cfg.optimizers, rotation=30)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "degradation.png", dpi=110)
    plt.close(fig)
    return ["degradation.png"]


def _plot_r_per_layer(plt, cfg: StudyConfig, rec: dict, out: Path) -> list[str]:
    """R_l along depth per optimizer at the largest size, when the diagnostics recorded it."""
    size = cfg.sizes[-1]
    fig, ax = plt.subplots(figsize=(6, 4))
    drew = False
    for opt in cfg.optimizers:
        d = rec["diag"][(opt, size)]
        if d.get("r_per_layer"):
            ax.plot([r["R"] if isinstance(r, dict) else r for r in d["r_per_layer"]], marker=".", label=opt)
            drew = True
    made = []
    if drew:
        ax.set(xlabel="module (depth order)", ylabel="R_l", yscale="log", title=f"Error propagation, {size}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "r_per_layer.png", dpi=110)
        made.append("r_per_layer.png")
    plt.close(fig)
    return made


def _plots(cfg: StudyConfig, rec: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    for plot in (_plot_loss_curves, _plot_degradation, _plot_r_per_layer):
        made += plot(plt, cfg, rec, out)
    if (out / "fits" / "fit.png").exists():
        made.append("fits/fit.png")
    return made


# Report sections: each returns its lines (the report joins all lines with newlines).

def _intro_section(cfg: StudyConfig) -> list[str]:
    return [f"# hf_optquant study `{cfg.name}`", "",
            f"{len(cfg.optimizers)} optimizers x {len(cfg.sizes)} sizes ({', '.join(cfg.sizes)}), "
            f"{cfg.tokens_per_param:g} tokens/parameter on `{cfg.dataset}`, precisions: {', '.join(cfg.precisions)}. "
            "Quality metric: validation loss (nats/token; lower is better)" +
            (f" and zero-shot acc_norm on {cfg.tasks}" if cfg.tasks else "") +
            ". The paper's numbers are mean zero-shot accuracy (%) at 350M-1.5B with 20 tokens/parameter: they are "
            "shown beside ours for orientation; the two are not on the same scale and, at this study's size, the "
            "paper's findings may or may not hold.", ""]


def _full_precision_section(cfg: StudyConfig, rec: dict) -> list[str]:
    opts = cfg.optimizers

    def loss(o, size):
        return rec["runs"][(o, size, "full")]["final_eval_loss"]

    table = _table(["size", "N"] + opts, [[size, rec["runs"][(opts[0], size, "full")]["n_params"]] +
                                          [loss(o, size) for o in opts] for size in cfg.sizes])
    return ["## 1. Full precision (final validation loss)", "", table, "",
            "Best in full precision: " + _winners(cfg, min, loss), "",
            "Paper (full precision, mean zero-shot accuracy %):", "", _paper_table(PAPER_FP_ACC, opts), ""]


def _ptq_section(cfg: StudyConfig, rec: dict) -> list[str]:
    opts, tag = cfg.optimizers, cfg.ptq[0].tag
    rows = []
    for size in cfg.sizes:
        cl = rec["cl"][size]
        for o in opts:
            p = rec["ptq"][(o, size)]
            q = p["ptq"][tag]
            mark = "" if p["checkpoint"]["reached"] else " (CL not reached: final checkpoint)"
            rows.append([size, o, cl["value"], f"{p['checkpoint']['step']}{mark}", p["fp"]["val_loss"],
                         q["val_loss"], q["delta_val_loss"], 100 * q["relative_val_loss"]])
    table = _table(["size", "optimizer", "Common Loss", "CL step", "loss at CL", "loss after PTQ",
                    "increase", "increase %"], rows)

    def increase(o, size):
        return rec["ptq"][(o, size)]["ptq"][tag]["delta_val_loss"]

    return [f"## 2. PTQ ({tag}) at the Common Loss", "", table, "",
            f"Degrades least under PTQ: {_winners(cfg, min, increase)}; most: {_winners(cfg, max, increase)}.",
            "Paper: Shampoo degrades least; Muon is best in full precision but degrades most.", "",
            "Paper (W4A4 RTN at CL, mean zero-shot accuracy %):", "", _paper_table(PAPER_PTQ_ACC, opts), ""]


def _qat_section(cfg: StudyConfig, rec: dict) -> list[str]:
    if not rec["qat"]:
        return []
    opts = cfg.optimizers
    table = _table(["size", "optimizer", "FP loss", "QAT loss", "relative increase %"],
                   [[size, o, rec["qat"][(o, size)]["fp_val_loss"], rec["qat"][(o, size)]["val_loss"],
                     100 * rec["qat"][(o, size)]["relative_val_loss"]] for size in cfg.sizes for o in opts])
    best = _winners(cfg, min, lambda o, size: rec["qat"][(o, size)]["val_loss"])
    return ["## 3. QAT (trained with quantization) vs full precision", "", table, "",
            f"Best under QAT: {best}.", "",
            "Paper (QAT accuracy relative drop %):", "", _paper_table(PAPER_QAT_DROP, opts), ""]


def _fits_section(cfg: StudyConfig, rec: dict) -> list[str]:
    fit = rec.get("fit") or {}
    label = fit.get("qat_precision", "4bit")
    lines = [f"## 4. Scaling fits and parameter efficiency rho (QAT, precision `{label}`)", ""]
    if not fit.get("available"):
        return lines + [f"Not fitted: {fit.get('reason', 'no fit record')}.", ""]
    rows = []
    for o in cfg.optimizers:
        f = fit["fits"].get(o, {})
        params = f.get("params", {})
        rho = (params.get("rho") or {}).get(label)
        ci = (((f.get("ci") or {}).get("rho")) or {}).get(label)
        rows.append([o, params.get("E"), params.get("alpha"), rho,
                     f"[{_cell(ci[0], 3)}, {_cell(ci[1], 3)}]" if ci else "n/a", f.get("loo_rmse"),
                     PAPER_RHO.get(o)])
    highest, lowest = max(PAPER_RHO, key=PAPER_RHO.get), min(PAPER_RHO, key=PAPER_RHO.get)
    return lines + [
        _table(["optimizer", "E", "alpha", "rho (ours)", "rho LOO interval", "LOO RMSE", "rho (paper)"], rows), "",
        f"Form: {fit.get('form')} (`fits/fit.json`, plot `fits/fit.png`). Paper: {_NAMES[highest]} has the highest "
        f"rho ({PAPER_RHO[highest]}), {_NAMES[lowest]} the lowest ({PAPER_RHO[lowest]}).", ""]


def _correlations_section(rec: dict) -> list[str]:
    lines = ["## 5. Which metric tracks PTQ degradation?", ""]
    corr = rec.get("correlations") or {}
    if not corr.get("runs"):
        reason = next(iter(rec["diag"].values()), {}).get("reason", "n/a")
        return lines + ["Diagnostics unavailable: " + str(reason), ""]
    rows = []
    for key, label in _METRIC_LABELS.items():
        c = corr["metrics"].get(key, {})
        ci = c.get("pearson_ci95") or [None, None]
        rows.append([label, c.get("pearson"), f"[{_cell(ci[0], 2)}, {_cell(ci[1], 2)}]", c.get("spearman"),
                     -PAPER_CORRELATIONS[key]])
    paper = ", ".join(f"{label} {PAPER_CORRELATIONS[key]:+.2f}" for key, label in _METRIC_LABELS.items())
    return lines + [
        _table(["metric", "Pearson (ours)", "95% bootstrap", "Spearman (ours)", "paper (vs degradation)"], rows), "",
        f"Ours: correlation with the post-PTQ val-loss increase over {len(corr['runs'])} runs. The paper's values "
        f"are against post-PTQ accuracy at 760M ({paper}); with degradation as the "
        "target their signs flip, as shown.", ""]


def _plots_section(plots: list[str]) -> list[str]:
    return ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]


def _files_section() -> list[str]:
    return ["## Files", "", "- `results.parquet`: one row per run (schema: hf_optquant/results.py)",
            "- `runs/`: every training run (HF checkpoints, `run.json`)",
            "- `analysis/`: the records this report is built from", "- `fits/`: scaling points, fit JSON and plot", ""]


def _write_results_table(cfg: StudyConfig, rec: dict, out: Path) -> None:
    tmp = out / ".results.parquet.tmp"
    results_frame(cfg, rec).to_parquet(tmp, index=False)
    tmp.replace(out / "results.parquet")


def write_report(cfg: StudyConfig) -> Path:
    """``results.parquet``, the plots and ``report.md`` of a study, from its stored records."""
    out = Path(cfg.output_dir)
    rec = load_records(cfg)
    _write_results_table(cfg, rec, out)
    plots = _plots(cfg, rec, out)
    sections = (_intro_section(cfg), _full_precision_section(cfg, rec), _ptq_section(cfg, rec),
                _qat_section(cfg, rec), _fits_section(cfg, rec), _correlations_section(rec),
                _plots_section(plots), _files_section())
    report = out / "report.md"
    atomic_write_text(report, "\n".join(line for section in sections for line in section))
    return report
