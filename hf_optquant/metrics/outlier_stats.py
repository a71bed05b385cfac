"""Outlier metrics of a layer's inputs (and of weights): MMR and kurtosis, streamed over batches.

Plain tensor functions plus one accumulator; moments are kept in float64 so that the kurtosis of many
batches equals the one-shot value (tests compare against scipy).
"""
from __future__ import annotations

import torch

__all__ = ["OUTLIER_SITES", "OUTLIER_METRICS", "mmr_per_token", "excess_kurtosis", "outlier_batch_stats",
           "OutlierAccumulator", "weight_stats", "aggregate_layers"]

# Where the outlier metrics are measured. residual (the paper's, as the authors' framework measures it): the
# residual stream, i.e. each decoder block's input and the last block's output; linear: every linear layer's
# input (a ReLU^2 down-projection's input is mostly exact zeros there, so its MMR is 1e6-1e9).
OUTLIER_SITES = ("residual", "linear", "both", "none")
OUTLIER_METRICS = ("mmr", "mmr_mean", "kurtosis", "kurtosis_channel_rms")


def _lower_median(a: torch.Tensor) -> torch.Tensor:
    """Row medians as torch.median defines them: the lower of the two middle values for an even width. This is
    the authors' definition (ant: ``feats.abs().median(dim=1)``), and one exact selection per row."""
    return a.median(dim=-1).values


def _mmr(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    num, den = num.to(torch.float64), den.to(torch.float64)
    return torch.where(den > 0, num / torch.where(den > 0, den, 1.0), float("nan"))


def mmr_per_token(x: torch.Tensor, denominator: str = "median") -> torch.Tensor:
    """max|x| / median|x| (or / mean|x|) over the last dimension, one value per token (float64); the median
    is torch's lower median, as in the authors' code. NaN where the denominator is 0 (e.g. a ReLU^2 output with
    more than half its entries exactly zero)."""
    a = x.detach().abs().reshape(-1, x.shape[-1])
    if denominator == "median":
        den = _lower_median(a)
    elif denominator == "mean":
        den = a.mean(dim=-1) if a.dtype == torch.float64 else a.float().mean(dim=-1)
    else:
        raise ValueError(f"denominator must be 'median' or 'mean', got {denominator!r}")
    return _mmr(a.amax(dim=-1), den)


def excess_kurtosis(x: torch.Tensor) -> float:
    """Fisher (excess) kurtosis of all entries, biased estimator (= scipy.stats.kurtosis's default)."""
    acc = OutlierAccumulator()
    acc.update(x.reshape(-1, 1))
    return acc.kurtosis()


def _kurt_from_moments(n: float, s1: float, s2: float, s3: float, s4: float) -> float:
    mu = s1 / n
    m2 = s2 / n - mu * mu
    m4 = s4 / n - 4 * mu * s3 / n + 6 * mu * mu * s2 / n - 3 * mu ** 4
    return float(m4 / (m2 * m2) - 3.0) if m2 > 0 else float("nan")


def outlier_batch_stats(x: torch.Tensor) -> dict:
    """One batch's contribution to :class:`OutlierAccumulator` (tokens x features): MMR sums, raw moments
    and per-channel sums of squares. Elementwise work and per-token sums in the activations' dtype (float32
    at least), sums over tokens in float64. One |x|, one exact selection (the median) and one x^2 serve all
    the metrics: the selection is most of the cost."""
    x = x.detach().reshape(-1, x.shape[-1])
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    f64 = torch.float64
    out = {"tokens": x.shape[0]}
    a = x.abs()
    peak = a.amax(dim=-1)
    for kind, den in (("median", _lower_median(a)), ("mean", a.mean(dim=-1))):
        r = _mmr(peak, den)
        ok = torch.isfinite(r)
        out[f"mmr_{kind}"] = (float(torch.where(ok, r, 0.0).sum()), int(ok.sum()))
    x2 = x * x
    out["moments"] = torch.stack([torch.tensor(float(x.numel()), dtype=f64, device=x.device),
                                  x.sum(-1).to(f64).sum(), x2.sum(-1).to(f64).sum(),
                                  torch.linalg.vecdot(x2, x).to(f64).sum(),
                                  torch.linalg.vecdot(x2, x2).to(f64).sum()]).cpu()
    out["channel_sumsq"] = x2.sum(0).to(f64).cpu()
    return out


class OutlierAccumulator:
    """Streams a layer's inputs (tokens x features): token-averaged MMRs, excess kurtosis of all entries
    and of the per-channel RMS."""

    def __init__(self):
        self.tokens = 0
        self.mmr_median_sum = self.mmr_mean_sum = 0.0
        self.mmr_median_n = self.mmr_mean_n = 0  # tokens with a non-zero denominator
        self.moments = torch.zeros(5, dtype=torch.float64)  # count, sum x, x^2, x^3, x^4
        self.channel_sumsq: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        self.add(outlier_batch_stats(x))

    def add(self, stats: dict) -> None:
        """Adds :func:`outlier_batch_stats` (the same stats may go to several layers sharing an input)."""
        self.tokens += stats["tokens"]
        for kind in ("median", "mean"):
            total, n = stats[f"mmr_{kind}"]
            setattr(self, f"mmr_{kind}_sum", getattr(self, f"mmr_{kind}_sum") + total)
            setattr(self, f"mmr_{kind}_n", getattr(self, f"mmr_{kind}_n") + n)
        self.moments = self.moments + stats["moments"]
        cs = stats["channel_sumsq"]
        self.channel_sumsq = cs if self.channel_sumsq is None else self.channel_sumsq + cs

    def kurtosis(self) -> float:
        return _kurt_from_moments(*self.moments.tolist())

    def channel_rms_kurtosis(self) -> float:
        rms = torch.sqrt(self.channel_sumsq / self.tokens)
        return _kurt_from_moments(float(rms.numel()), float(rms.sum()), float((rms ** 2).sum()),
                                  float((rms ** 3).sum()), float((rms ** 4).sum()))

    def summary(self) -> dict:
        nan = float("nan")
        return {"mmr": self.mmr_median_sum / self.mmr_median_n if self.mmr_median_n else nan,
                "mmr_mean": self.mmr_mean_sum / self.mmr_mean_n if self.mmr_mean_n else nan,
                "mmr_tokens": self.mmr_median_n, "kurtosis": self.kurtosis(),
                "kurtosis_channel_rms": self.channel_rms_kurtosis(), "tokens": self.tokens}


def weight_stats(weight: torch.Tensor) -> dict:
    """The same metrics of a weight matrix, its rows taken as tokens."""
    acc = OutlierAccumulator()
    acc.update(weight)
    s = acc.summary()
    return {"weight_mmr": s["mmr"], "weight_kurtosis": s["kurtosis"]}


def aggregate_layers(values) -> float:
    """One model-level value from per-layer values: the median over the layers where it is defined (finite),
    NaN if none. A mean (even of logs) is decided by one degenerate layer: a down-projection input with a
    per-token median of ~0 has an MMR of 1e6-1e9 against 3-10 elsewhere; the median moves only when half the
    layers do."""
    import math
    import statistics

    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    return float(statistics.median(vals)) if vals else float("nan")
