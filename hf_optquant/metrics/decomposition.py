"""The ABC error-propagation decomposition (docs/method.md section 7) as plain tensor functions.

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

__all__ = ["abc_vectors", "abc_sums", "abc_from_sums", "gain_sums", "GainAccumulator", "gain_from_sums", "NORMS"]

NORMS = ("tensor", "token")


def abc_vectors(f_h, f_hq, fq_h, fq_hq) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(a, b, d)`` in the inputs' dtype (sums over them are taken in float64)."""
    f_h, f_hq, fq_h, fq_hq = (t.detach() for t in (f_h, f_hq, fq_h, fq_hq))
    # In place after the first difference: the same roundings as 0.5 * ((x - y) + (z - w)), fewer buffers.
    a = torch.sub(fq_hq, fq_h).add_(torch.sub(f_hq, f_h)).mul_(0.5)
    b = torch.sub(fq_hq, f_hq).add_(torch.sub(fq_h, f_h)).mul_(0.5)
    return a, b, fq_hq - f_h


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1])


def _dots(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-token dot products, taken in the inputs' dtype and returned in float64 (one read of each input)."""
    return torch.linalg.vecdot(_rows(x), _rows(y)).to(torch.float64)


def abc_sums(f_h, f_hq, fq_h, fq_hq, h_in=None, hq_in=None, *, norm: str = "tensor") -> dict[str, float]:
    """This batch's contribution: ``aa, bb, ab, dd, hh`` (and ``in_dd, in_hh`` for the input's own relative
    error). For ``token`` every term is a per-token ratio summed over tokens, with ``n`` the token count;
    tokens whose clean output is exactly zero are skipped.

    Each term is a per-token dot product in the activations' dtype (a vector's length at most the hidden or
    vocabulary size), summed over tokens in float64: casting whole outputs to float64 first cost 15x more
    on an LM head's logits for no accuracy a diagnostic can use.

    a and b are never formed: with d = fq(hq) - f(h) and s = f(hq) - fq(h), a = (d + s)/2 and b = (d - s)/2,
    so |a|^2, |b|^2 and <a, b> follow per token from <d, d>, <s, s> and <d, s>: two differences and three
    dots over the outputs instead of nine elementwise passes and four dots (on an LM head's logits, the
    largest tensors of the pass)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    f_h = f_h.detach()
    d = fq_hq.detach() - f_h
    s_ = f_hq.detach() - fq_h.detach()
    dd, ss, ds, hh = _dots(d, d), _dots(s_, s_), _dots(d, s_), _dots(f_h, f_h)
    aa, bb, ab = 0.25 * (dd + 2 * ds + ss), 0.25 * (dd - 2 * ds + ss), 0.25 * (dd - ss)
    if norm == "tensor":
        w, n = torch.ones_like(hh), torch.tensor(1.0)
        out = {"hh": hh.sum()}
    else:
        keep = hh > 0
        w = torch.where(keep, 1.0 / torch.where(keep, hh, torch.ones_like(hh)), torch.zeros_like(hh))
        n = keep.sum()
        out = {"hh": n}
    out.update({"aa": (aa * w).sum(), "bb": (bb * w).sum(), "ab": (ab * w).sum(), "dd": (dd * w).sum(), "n": n})
    if h_in is not None:  # the input's own relative error, reduced the same way as A
        x = h_in.detach()
        e = hq_in.detach() - x
        ee, xx = _dots(e, e), _dots(x, x)
        if norm == "tensor":
            out["in_dd"], out["in_hh"] = ee.sum(), xx.sum()
        else:
            ok = xx > 0
            out["in_dd"], out["in_hh"] = (ee[ok] / xx[ok]).sum(), ok.sum()
    return {k: float(v) for k, v in out.items()}


def abc_from_sums(s: dict[str, float]) -> dict[str, float]:
    """``A, B, C, R`` (and ``R_in`` and ``G = A / R_in``) from summed terms."""
    den = s["hh"] if s.get("hh") else float("nan")
    out = {"A": s["aa"] / den, "B": s["bb"] / den, "C": 2 * s["ab"] / den, "R": s["dd"] / den}
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
    return {"Md": float(_dots(Md, Md).sum()), "d": float(_dots(d, d).sum()),
            "Wh": float(_dots(Wh, Wh).sum()), "h": float(_dots(h, h).sum())}


class GainAccumulator:
    """Streams :func:`gain_sums` of one linear layer over batches.

    A layer at least 4x wider out than in (an LM head) keeps the input Gram matrices D^T D and H^T H
    (float64, in x in) instead, and applies the weights once at the end: sum_t |M d_t|^2 = <M^T M, D^T D>.
    That costs 2 T in^2 per batch instead of 2 T in out (a 2048-word head over 192 features: 9x faster) and
    two in x in matrices of memory, at most half the weight's float64 copy. Other layers take the direct
    per-batch sums, which keep nothing between batches. ``gram`` forces either path."""

    def __init__(self, W: torch.Tensor, Wq: torch.Tensor, gram: bool | None = None):
        self.W, self.Wq = W, Wq
        out_f, in_f = W.shape
        self.gram = out_f >= 4 * in_f if gram is None else gram
        self._sums = {"Md": 0.0, "d": 0.0, "Wh": 0.0, "h": 0.0}
        self._DD = self._HH = None

    def update(self, h_in: torch.Tensor, hq_in: torch.Tensor) -> None:
        if not self.gram:
            for k, v in gain_sums(self.W, self.Wq, h_in, hq_in).items():
                self._sums[k] += v
            return
        h = _rows(h_in.detach()).to(torch.float64)
        d = _rows(hq_in.detach()).to(torch.float64) - h
        DD, HH = d.T @ d, h.T @ h
        self._DD = DD if self._DD is None else self._DD + DD
        self._HH = HH if self._HH is None else self._HH + HH

    def sums(self) -> dict[str, float]:
        return self.factors(sums_only=True)

    def factors(self, *, sums_only: bool = False) -> dict[str, float]:
        """G1 and G2 (see :func:`gain_from_sums`); on the Gram path M^T M and W^T W serve both the sums and
        the spectral norms, so a vocabulary-sized head is multiplied out once."""
        if not self.gram or self._DD is None:
            return dict(self._sums) if sums_only else gain_from_sums(self.W, self.Wq, self._sums)
        W = self.W.detach().to(self._DD.device, torch.float64)
        M = 0.5 * (W + self.Wq.detach().to(W.device, torch.float64))
        MtM, WtW = M.T @ M, W.T @ W
        s = {"Md": float((MtM * self._DD).sum()), "d": float(self._DD.trace()),
             "Wh": float((WtW * self._HH).sum()), "h": float(self._HH.trace())}
        return s if sums_only else _gain_factors(_top_eig(MtM), _top_eig(WtW), s)


def _top_eig(G: torch.Tensor) -> float:
    return float(torch.linalg.eigvalsh(G)[-1].clamp_min(0))


def _spectral_norm_sq(A: torch.Tensor) -> float:
    # From the smaller Gram matrix's top eigenvalue: an SVD of a vocabulary-sized head takes far longer.
    return _top_eig(A.T @ A if A.shape[0] >= A.shape[1] else A @ A.T)


def _gain_factors(sM2: float, sW2: float, s: dict[str, float]) -> dict[str, float]:
    if not (s["d"] > 0 and s["h"] > 0 and s["Wh"] > 0):
        return {"G1": sM2 / sW2, "G2": float("nan")}
    return {"G1": sM2 / sW2, "G2": (s["Md"] / (sM2 * s["d"])) / (s["Wh"] / (sW2 * s["h"]))}


def gain_from_sums(W: torch.Tensor, Wq: torch.Tensor, s: dict[str, float]) -> dict[str, float]:
    """G1 = (|W + eW/2|_2 / |W|_2)^2 and G2 = (cos phi / cos psi)^2, cos phi = |M d| / (|M|_2 |d|),
    cos psi = |W h| / (|W|_2 |h|), norms summed over the batches' tokens.

    G1 * G2 = (sum |M d|^2 sum |h|^2) / (sum |d|^2 sum |W h|^2), which equals G = A / R_in exactly when
    a = M d, i.e. for a bias-free linear whose activations are not quantized (activation noise lands in a).
    """
    W64 = W.detach().to(torch.float64)
    M = 0.5 * (W64 + Wq.detach().to(torch.float64))
    return _gain_factors(_spectral_norm_sq(M), _spectral_norm_sq(W64), s)
