"""Data and fitted curves per optimizer, one panel each (PNG)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import atomic_write_bytes

__all__ = ["plot_fits"]


def plot_fits(fitted: list[tuple[str, object, object]], out_png: str | Path) -> Path:
    """``fitted``: ``[(optimizer, law, frame)]``. Curves are drawn at each precision's median tokens per
    parameter, since a Chinchilla law needs D as well as N."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(fitted)
    cols = min(k, 3)
    rows = (k + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (opt, law, g) in zip(axes.ravel(), fitted):
        for j, (prec, gp) in enumerate(sorted(g.groupby("precision"), key=lambda t: t[0] != "full")):
            color = f"C{j}"
            ax.scatter(gp["N"], gp["loss"], s=18, color=color, label=prec)
            n = np.geomspace(gp["N"].min() / 1.5, gp["N"].max() * 1.5, 100)
            tpp = float(np.median(gp["D"] / gp["N"]))
            ax.plot(n, law.predict(n, n * tpp, [prec] * len(n)), color=color, lw=1.2)
        ax.set_xscale("log")
        ax.set_title(opt, fontsize=10)
        ax.set_xlabel("parameters N")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[k:]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(out_png, buf.getvalue())
