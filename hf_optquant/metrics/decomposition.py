"""The ABC error-propagation decomposition (PAPER.md section 5) as plain tensor functions.

For one module with clean input h and quantized-model input hq:
    a = 1/2 [(fq(hq) - fq(h)) + (f(hq) - f(h))]     error carried in from the input
    b = 1/2 [(fq(hq) - f(hq)) + (fq(h) - f(h))]     error the module adds
    d = fq(hq) - f(h) = a + b
    R = |d|^2/|f(h)|^2 = A + B + C,  A = |a|^2/|f(h)|^2,  B = |b|^2/|f(h)|^2,  C = 2<a, b>/|f(h)|^2.
``abc_sums`` returns the float64 sums one batch contributes; sums add over batches and ``abc_from_sums``
turns them into A, B, C, R. Two reductions: ``tensor`` (norms over the whole batch, the paper's) and
``token`` (each token's ratios, averaged over tokens).
"""
from __future__ import annotations

import torch

__all__ = ["abc_vectors", "abc_sums", "abc_from_sums", "gain_sums", "gain_from_sums", "NORMS"]

NORMS = ("tensor", "token")


def abc_vectors(f_h, f_hq, fq_h, fq_hq) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(a, b, d)`` in the inputs' dtype (sums over them are taken in float64)."""
    f_h, f_hq, fq_h, fq_hq = (t.detach() for t in (f_h, f_hq, fq_h, fq_hq))
    a = 0.5 * ((fq_hq - fq_h) + (f_hq - f_h))
    b = 0.5 * ((fq_hq - f_hq) + (fq_h - f_h))
    return a, b, fq_hq - f_h


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1])


def abc_sums(f_h, f_hq, fq_h, fq_hq, h_in=None, hq_in=None, *, norm: str = "tensor") -> dict[str, float]:
    """This batch's contribution: ``aa, bb, ab, dd, hh`` (and ``closure`` = |a + b - d|^2, ``in_dd, in_hh``
    for the input's own relative error). For ``token`` every term is a per-token ratio summed over tokens,
    with ``n`` the token count; tokens whose clean output is exactly zero are skipped."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    a, b, d = abc_vectors(f_h, f_hq, fq_h, fq_hq)
    h = f_h.detach()
    closure = (a + b - d)
    f64 = torch.float64
    if norm == "tensor":
        out = {"aa": (a * a).sum(dtype=f64), "bb": (b * b).sum(dtype=f64), "ab": (a * b).sum(dtype=f64),
               "dd": (d * d).sum(dtype=f64), "hh": (h * h).sum(dtype=f64),
               "closure": (closure * closure).sum(dtype=f64), "n": 1.0}
    else:
        a, b, d, h, closure = (_rows(t).to(f64) for t in (a, b, d, h, closure))
        hh = (h * h).sum(-1)
        keep = hh > 0
        w = torch.where(keep, 1.0 / torch.where(keep, hh, torch.ones_like(hh)), torch.zeros_like(hh))
        out = {"aa": ((a * a).sum(-1) * w).sum(), "bb": ((b * b).sum(-1) * w).sum(),
               "ab": ((a * b).sum(-1) * w).sum(), "dd": ((d * d).sum(-1) * w).sum(), "hh": keep.sum(),
               "closure": ((closure * closure).sum(-1) * w).sum(), "n": keep.sum()}
    if h_in is not None:  # the input's own relative error, reduced the same way as A
        e, x = hq_in.detach() - h_in.detach(), h_in.detach()
        if norm == "tensor":
            out["in_dd"], out["in_hh"] = (e * e).sum(dtype=f64), (x * x).sum(dtype=f64)
        else:
            ee, xx = (_rows(e).to(f64) ** 2).sum(-1), (_rows(x).to(f64) ** 2).sum(-1)
            ok = xx > 0
            out["in_dd"] = (ee[ok] / xx[ok]).sum()
            out["in_hh"] = ok.sum()
    return {k: float(v) for k, v in out.items()}


def abc_from_sums(s: dict[str, float]) -> dict[str, float]:
    """``A, B, C, R`` (and ``R_in``, ``G = A / R_in``, ``closure`` relative to |f(h)|^2) from summed terms."""
    den = s["hh"] if s.get("hh") else float("nan")
    out = {"A": s["aa"] / den, "B": s["bb"] / den, "C": 2 * s["ab"] / den, "R": s["dd"] / den,
           "closure": s["closure"] / den}
    if "in_dd" in s:
        r_in = s["in_dd"] / s["in_hh"] if s["in_hh"] else float("nan")
        out["R_in"] = r_in
        out["G"] = out["A"] / r_in if r_in else float("nan")
    return out


def gain_sums(W: torch.Tensor, Wq: torch.Tensor, h_in: torch.Tensor, hq_in: torch.Tensor) -> dict[str, float]:
    """Per-batch sums for a linear layer's gain factors: |M d|^2, |d|^2, |W h|^2, |h|^2 with M = W + eW/2
    (products in the activations' dtype, sums in float64)."""
    dt = h_in.dtype
    W, M = W.detach().to(dt), (0.5 * (W.detach() + Wq.detach())).to(dt)
    h = _rows(h_in.detach())
    d = _rows(hq_in.detach()) - h
    Md, Wh = d @ M.T, h @ W.T
    f64 = torch.float64
    return {"Md": float((Md * Md).sum(dtype=f64)), "d": float((d * d).sum(dtype=f64)),
            "Wh": float((Wh * Wh).sum(dtype=f64)), "h": float((h * h).sum(dtype=f64))}


def gain_from_sums(W: torch.Tensor, Wq: torch.Tensor, s: dict[str, float]) -> dict[str, float]:
    """G1 = (|W + eW/2|_2 / |W|_2)^2 and G2 = (cos phi / cos psi)^2, cos phi = |M d| / (|M|_2 |d|),
    cos psi = |W h| / (|W|_2 |h|), norms summed over the batches' tokens.

    G1 * G2 = (sum |M d|^2 sum |h|^2) / (sum |d|^2 sum |W h|^2), which equals G = A / R_in exactly when
    a = M d, i.e. for a bias-free linear whose activations are not quantized (activation noise lands in a).
    """
    W64, Wq64 = W.detach().to(torch.float64), Wq.detach().to(torch.float64)
    M = 0.5 * (W64 + Wq64)
    sM, sW = torch.linalg.matrix_norm(M, ord=2), torch.linalg.matrix_norm(W64, ord=2)
    if not (s["d"] > 0 and s["h"] > 0 and s["Wh"] > 0):
        return {"G1": float((sM / sW) ** 2), "G2": float("nan")}
    cos_phi2 = s["Md"] / (float(sM) ** 2 * s["d"])
    cos_psi2 = s["Wh"] / (float(sW) ** 2 * s["h"])
    return {"G1": float((sM / sW) ** 2), "G2": cos_phi2 / cos_psi2}
