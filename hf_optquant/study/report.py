"""``report.md``, plots and ``results.parquet`` of a study, built from the stored records only."""
from __future__ import annotations

import json
import math
from importlib import metadata
from pathlib import Path

from ..io import atomic_write_text
from ..qat.config import read_qat_record
from .analysis import load_records
from .common_loss import selected_fp_run
from .config import StudyConfig
from .fits import PAPER_CORRELATIONS, PAPER_RHO

__all__ = ["write_report", "results_frame"]

PAPER_PTQ_ACC = {  # W4A4 RTN at CL, mean zero-shot accuracy % (docs/method.md section 4)
    "350M": {"adamw": 49.23, "muon": 47.42, "psgd": 50.09, "scion": 49.80, "shampoo": 53.93, "soap": 49.08},
    "760M": {"adamw": 59.22, "muon": 50.00, "psgd": 52.11, "scion": 53.74, "shampoo": 59.26, "soap": 46.22},
    "1.5B": {"adamw": 62.51, "muon": 47.75, "shampoo": 63.88},
}
PAPER_QAT_DROP = {  # relative accuracy drop % of QAT vs full precision (docs/method.md section 5)
    "350M": {"adamw": -3.43, "muon": -4.98, "shampoo": -2.64},
    "760M": {"adamw": -2.63, "muon": -3.57, "shampoo": -0.46},
    "1.5B": {"adamw": -1.63, "muon": -2.11, "shampoo": -1.20},
}
PAPER_FP_ACC = {"350M": {"adamw": 56.58, "muon": 58.08, "shampoo": 56.51},
                "760M": {"adamw": 63.90, "muon": 64.63, "shampoo": 63.05},
                "1.5B": {"adamw": 67.93, "muon": 69.19, "shampoo": 68.16}}


def _f(v, digits=4):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _paper_line(table: dict, opts: list[str]) -> str:
    rows = [[size] + [_f(table[size].get(o), 2) if o in table[size] else "-" for o in opts] for size in table]
    return _table(["paper size"] + opts, rows)


def results_frame(cfg: StudyConfig, rec: dict):
    """Rows in the Hub results schema (hf_optquant.hub.schema): FP final, PTQ at CL, QAT."""
    import pandas as pd

    version = metadata.version("hf_optquant")
    rows = []
    for (opt, size, prec), run in rec["runs"].items():
        base = {"study": cfg.name, "optimizer": opt, "model_size": size, "n_params": run["n_params"],
                "n_params_non_embedding": run["n_params_non_embedding"], "tokens": run["tokens_seen"],
                "learning_rate": run["learning_rate"], "final_train_loss": run["final_train_loss"],
                "wall_time_s": run.get("wall_time_s"), "hf_optquant_version": version,
                "versions": json.dumps(run.get("versions", {}), sort_keys=True)}
        if prec == "full":
            fp_id = selected_fp_run(cfg, opt, size).run_id
            loss = run["final_eval_loss"]
            rows.append({**base, "run_id": f"{cfg.name}/{fp_id}", "precision": "full", "method": "none",
                         "val_loss": loss, "val_ppl": math.exp(loss)})
            ptq = rec["ptq"][(opt, size)]
            diag = rec["diag"][(opt, size)]
            for tag, q in ptq["ptq"].items():
                c = q["config"]
                rows.append({**base, "run_id": f"{cfg.name}/{fp_id}/{tag}", "precision": "ptq", "method": c["method"],
                             "w_bits": c["w_bits"], "a_bits": c["a_bits"], "granularity": c["granularity"],
                             "common_loss": ptq["common_loss"], "tokens": ptq["checkpoint"]["tokens"],
                             "val_loss": q["val_loss"], "val_ppl": q["val_ppl"],
                             "parent_run_id": f"{cfg.name}/{fp_id}", "delta_val_loss": q["delta_val_loss"],
                             "mmr": diag.get("mmr"), "mmr_mean": diag.get("mmr_mean"),
                             "kurtosis": diag.get("kurtosis"), "kurtosis_channel_rms": diag.get("kurtosis_channel_rms"),
                             "r_l": diag.get("r_l")})
        else:
            q = rec["qat"][(opt, size)]
            qat = read_qat_record(run)
            rows.append({**base, "run_id": f"{cfg.name}/{opt}-{size}-qat", "precision": "qat",
                         "method": f"{qat.quantizer}-qat", "w_bits": qat.scheme.w_bits,
                         "a_bits": qat.scheme.a_bits, "granularity": qat.scheme.granularity,
                         "val_loss": q["val_loss"], "val_ppl": math.exp(q["val_loss"]),
                         "parent_run_id": f"{cfg.name}/{selected_fp_run(cfg, opt, size).run_id}",
                         "delta_val_loss": q["delta_val_loss"]})
    df = pd.DataFrame(rows)
    try:
        from ..hub.schema import normalize_results

        df = normalize_results(df, source="study results")
    except ImportError:
        pass
    return df


def _plots(cfg: StudyConfig, rec: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    # Loss curves per optimizer (largest size).
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
    made.append("loss_curves.png")
    # Degradation bars: PTQ and QAT loss increase per optimizer and size.
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
    made.append("degradation.png")
    # R_l per layer from the diagnostics tables, if present.
    fig, ax = plt.subplots(figsize=(6, 4))
    drew = False
    for opt in cfg.optimizers:
        d = rec["diag"][(opt, size)]
        if d.get("r_per_layer"):
            ax.plot([r["R"] if isinstance(r, dict) else r for r in d["r_per_layer"]], marker=".", label=opt)
            drew = True
    if drew:
        ax.set(xlabel="module (depth order)", ylabel="R_l", yscale="log", title=f"Error propagation, {size}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "r_per_layer.png", dpi=110)
        made.append("r_per_layer.png")
    plt.close(fig)
    if (out / "fits" / "fit.png").exists():
        made.append("fits/fit.png")
    return made


def write_report(cfg: StudyConfig) -> Path:
    out = Path(cfg.output_dir)
    rec = load_records(cfg)
    opts, tag = cfg.optimizers, cfg.ptq[0].tag
    df = results_frame(cfg, rec)
    tmp = out / ".results.parquet.tmp"
    df.to_parquet(tmp, index=False)
    tmp.replace(out / "results.parquet")
    plots = _plots(cfg, rec, out)
    s = [f"# hf_optquant study `{cfg.name}`", "",
         f"{len(opts)} optimizers x {len(cfg.sizes)} sizes ({', '.join(cfg.sizes)}), {cfg.tokens_per_param:g} "
         f"tokens/parameter on `{cfg.dataset}`, precisions: {', '.join(cfg.precisions)}. Quality metric: validation "
         "loss (nats/token; lower is better)" + (f" and zero-shot acc_norm on {cfg.tasks}" if cfg.tasks else "") +
         ". The paper's numbers are mean zero-shot accuracy (%) at 350M-1.5B with 20 tokens/parameter: they are "
         "shown beside ours for orientation; the two are not on the same scale and, at this study's size, the "
         "paper's findings may or may not hold.", ""]
    # 1. Full precision.
    s += ["## 1. Full precision (final validation loss)", ""]
    s.append(_table(["size", "N"] + opts, [[size, rec["runs"][(opts[0], size, "full")]["n_params"]] +
                                          [rec["runs"][(o, size, "full")]["final_eval_loss"] for o in opts]
                                          for size in cfg.sizes]))
    best = {size: min(opts, key=lambda o: rec["runs"][(o, size, "full")]["final_eval_loss"]) for size in cfg.sizes}
    s += ["", "Best in full precision: " + ", ".join(f"{k}: **{v}**" for k, v in best.items()), "",
          "Paper (full precision, mean zero-shot accuracy %):", "", _paper_line(PAPER_FP_ACC, opts), ""]
    # 2. PTQ at CL.
    s += [f"## 2. PTQ ({tag}) at the Common Loss", ""]
    rows = []
    for size in cfg.sizes:
        cl = rec["cl"][size]
        for o in opts:
            p = rec["ptq"][(o, size)]
            q = p["ptq"][tag]
            mark = "" if p["checkpoint"]["reached"] else " (CL not reached: final checkpoint)"
            rows.append([size, o, cl["value"], f"{p['checkpoint']['step']}{mark}", p["fp"]["val_loss"],
                         q["val_loss"], q["delta_val_loss"], 100 * q["relative_val_loss"]])
    s.append(_table(["size", "optimizer", "Common Loss", "CL step", "loss at CL", "loss after PTQ",
                     "increase", "increase %"], rows))
    least = {size: min(opts, key=lambda o: rec["ptq"][(o, size)]["ptq"][tag]["delta_val_loss"]) for size in cfg.sizes}
    most = {size: max(opts, key=lambda o: rec["ptq"][(o, size)]["ptq"][tag]["delta_val_loss"]) for size in cfg.sizes}
    s += ["", "Degrades least under PTQ: " + ", ".join(f"{k}: **{v}**" for k, v in least.items()) +
          "; most: " + ", ".join(f"{k}: **{v}**" for k, v in most.items()) + ".",
          "Paper: Shampoo degrades least; Muon is best in full precision but degrades most.", "",
          "Paper (W4A4 RTN at CL, mean zero-shot accuracy %):", "", _paper_line(PAPER_PTQ_ACC, opts), ""]
    # 3. QAT.
    if rec["qat"]:
        s += ["## 3. QAT (trained with quantization) vs full precision", ""]
        s.append(_table(["size", "optimizer", "FP loss", "QAT loss", "relative increase %"],
                        [[size, o, rec["qat"][(o, size)]["fp_val_loss"], rec["qat"][(o, size)]["val_loss"],
                          100 * rec["qat"][(o, size)]["relative_val_loss"]] for size in cfg.sizes for o in opts]))
        bestq = {size: min(opts, key=lambda o: rec["qat"][(o, size)]["val_loss"]) for size in cfg.sizes}
        s += ["", "Best under QAT: " + ", ".join(f"{k}: **{v}**" for k, v in bestq.items()) + ".", "",
              "Paper (QAT accuracy relative drop %):", "", _paper_line(PAPER_QAT_DROP, opts), ""]
    # 4. Scaling fits.
    fit = rec.get("fit")
    label = (fit or {}).get("qat_precision", "4bit")
    s += [f"## 4. Scaling fits and parameter efficiency rho (QAT, precision `{label}`)", ""]
    if fit and fit.get("available"):
        rows = []
        for o in opts:
            f = fit["fits"].get(o, {})
            params = f.get("params", {})
            rho = (params.get("rho") or {}).get(label)
            ci = (((f.get("ci") or {}).get("rho")) or {}).get(label)
            rows.append([o, params.get("E"), params.get("alpha"), rho,
                         f"[{_f(ci[0], 3)}, {_f(ci[1], 3)}]" if ci else "n/a", f.get("loo_rmse"),
                         PAPER_RHO.get(o)])
        s.append(_table(["optimizer", "E", "alpha", "rho (ours)", "rho LOO interval", "LOO RMSE", "rho (paper)"],
                        rows))
        form = fit.get("form")
        s += ["", f"Form: {form} (`fits/fit.json`, plot `fits/fit.png`). Paper: Shampoo has the highest rho "
              "(0.879), PSGD the lowest (0.739).", ""]
    else:
        s += [f"Not fitted: {(fit or {}).get('reason', 'no fit record')}.", ""]
    # 5. Correlations.
    s += ["## 5. Which metric tracks PTQ degradation?", ""]
    corr = rec.get("correlations") or {}
    if corr.get("runs"):
        rows = []
        for key, label in (("mmr", "MMR"), ("kurtosis", "kurtosis"), ("r_l", "R_L")):
            c = corr["metrics"].get(key, {})
            ci = c.get("pearson_ci95") or [None, None]
            rows.append([label, c.get("pearson"), f"[{_f(ci[0], 2)}, {_f(ci[1], 2)}]", c.get("spearman"),
                         -PAPER_CORRELATIONS[key]])
        s.append(_table(["metric", "Pearson (ours)", "95% bootstrap", "Spearman (ours)",
                         "paper (vs degradation)"], rows))
        s += ["", f"Ours: correlation with the post-PTQ val-loss increase over {len(corr['runs'])} runs. The "
              "paper's values are against post-PTQ accuracy at 760M (MMR +0.62, kurtosis +0.70, R_L -0.89); with "
              "degradation as the target their signs flip, as shown.", ""]
    else:
        s += ["Diagnostics unavailable: " + str(next(iter(rec["diag"].values()), {}).get("reason", "n/a")), ""]
    s += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    s += ["## Files", "", "- `results.parquet`: one row per run (schema: hf_optquant/hub/schema.py)",
          "- `runs/`: every training run (HF checkpoints, `run.json`)", "- `analysis/`: the records this report "
          "is built from", "- `fits/`: scaling points, fit JSON and plot", ""]
    report = out / "report.md"
    atomic_write_text(report, "\n".join(s))
    return report
