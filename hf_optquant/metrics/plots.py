"""Diagnosis plots: R_l and A/B/C per module; MMR per residual-stream point or linear layer (PNG)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["plot_abc", "plot_mmr", "plot_correlations"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_abc(rows: list[dict], stages: list[dict], out: Path) -> None:
    """Top: R of every stage's output (log scale). Bottom: A, B, C stacked per ABC module (C may be < 0)."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(6, 0.35 * len(rows) + 2), 6.5))
    ax1.plot(range(len(stages)), [s["R"] for s in stages], marker="o")
    ax1.set_xticks(range(len(stages)), [s["stage"] for s in stages], rotation=60, fontsize=7)
    ax1.set(yscale="log", ylabel="R (relative error)", title="Error at each stage's output")
    x = range(len(rows))
    a, b, c = ([r[k] for r in rows] for k in ("A", "B", "C"))
    ax2.bar(x, a, label="A (propagated)")
    ax2.bar(x, b, bottom=a, label="B (added)")
    ax2.bar(x, c, bottom=[max(ai + bi, 0) if ci >= 0 else 0 for ai, bi, ci in zip(a, b, c)], label="C (cross)")
    ax2.plot(x, [r["R"] for r in rows], "k.", label="R")
    ax2.set_xticks(list(x), [r["module"] for r in rows], rotation=60, fontsize=7)
    ax2.set(ylabel="share of |f(h)|^2", title="ABC decomposition per module")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_mmr(outliers: list[dict], out: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(outliers) + 2), 4))
    x = range(len(outliers))
    ax.plot(x, [r["mmr"] for r in outliers], marker="o", label="max/median")
    ax.plot(x, [r["mmr_mean"] for r in outliers], marker="s", label="max/mean")
    labels = [r["module"] if r.get("site") != "residual" else f"in:{r['module']}" for r in outliers]
    ax.set_xticks(list(x), labels, rotation=60, fontsize=7)
    ax.set(yscale="log", ylabel="MMR (token mean)",
           title="Max-to-median ratio (in:X = residual stream at X's input; others: linear inputs)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_correlations(res: dict, out: Path) -> None:
    """One scatter per metric against the target, runs labelled (a :func:`correlate_runs` result)."""
    plt = _plt()
    keys = ("mmr", "kurtosis", "r_l")
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6))
    for ax, k in zip(axes, keys):
        pts = [(r[k], r[res["target"]], r["name"]) for r in res["runs"] if r.get(k) is not None]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts])
        for x, y, name in pts:
            ax.annotate(name, (x, y), fontsize=6)
        m = res["metrics"][k]
        r = "n/a" if m["pearson"] is None else f"{m['pearson']:+.2f}"
        ax.set(xlabel=k, ylabel=res["target"], title=f"{k}: Pearson {r} (paper {m['paper']:+.2f})")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
