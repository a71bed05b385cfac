"""QAT fake-quantization math as plain tensor functions (forward value + gradient rule).

* ``rtn_ste``: the shared RTN grid (``hf_optquant.quant.rtn``, compressed-tensors'
  symmetric convention) with a plain straight-through estimator (identity gradient).
* ``quest_fake_quant`` / ``quest_ste``: QuEST (PAPER.md section 6) on an already
  Hadamard-rotated tensor: scale = c(bits) x RMS of each row (or group, or the tensor),
  a symmetric midrise grid of 2^b levels spanning [-scale, scale] (step 2 scale/(2^b-1)),
  and a gradient that passes only where |x_q - x| <= scale/(2^b-1) (the "trust" mask:
  for 4 bits RMS x 2.5139 / 15, as in the paper). The scale itself gets no gradient
  (the quantized value is detached), as in the authors' code.

``gaussian_optimal_clip(bits)`` derives c: the clipping level (in units of the standard
deviation) minimising the mean squared error of that grid on a standard Gaussian.
"""
from __future__ import annotations

import functools
import math

import torch

from ..quant import Granularity, fake_quant_per_token, fake_quant_rtn, parse_granularity

__all__ = ["gaussian_optimal_clip", "gaussian_grid_mse", "quest_fake_quant", "quest_ste", "rtn_ste",
           "rtn_ste_per_token"]

_EPS = 1e-12


def gaussian_grid_mse(clip: float, bits: int) -> float:
    """E[(x - Q(x))^2] for x ~ N(0, 1) and Q the 2^b-level midrise grid on [-clip, clip].

    Closed form per cell [a, b] with level l: int (x-l)^2 phi = [Phi - x phi]_a^b
    + 2 l [phi]_a^b + l^2 [Phi]_a^b (the outer cells extend to +-infinity).
    """
    from scipy.special import ndtr

    n = 2**bits
    step = 2.0 * clip / (n - 1)
    levels = [-clip + i * step for i in range(n)]
    edges = [-math.inf] + [l + step / 2 for l in levels[:-1]] + [math.inf]

    def phi(x):
        return 0.0 if math.isinf(x) else math.exp(-x * x / 2) / math.sqrt(2 * math.pi)

    def xphi(x):
        return 0.0 if math.isinf(x) else x * phi(x)

    total = 0.0
    for l, a, b in zip(levels, edges[:-1], edges[1:]):
        dPhi = float(ndtr(b) - ndtr(a))
        total += (dPhi - (xphi(b) - xphi(a))) + 2 * l * (phi(b) - phi(a)) + l * l * dPhi
    return total


@functools.lru_cache(maxsize=None)
def gaussian_optimal_clip(bits: int) -> float:
    """MSE-optimal clipping level c(bits) for a standard Gaussian (4 bits: 2.5139, as in the paper)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(gaussian_grid_mse, bounds=(0.5, 8.0), args=(bits,), method="bounded",
                          options={"xatol": 1e-7})
    return float(res.x)


def _grouped(x: torch.Tensor, gran: Granularity) -> torch.Tensor:
    """View ``x`` (..., d) as (rows, n_groups, group) so that the last dim shares one scale."""
    d = x.shape[-1]
    if gran.kind == "tensor":
        return x.reshape(1, 1, -1)
    if gran.kind == "row":
        return x.reshape(-1, 1, d)
    gran.check_divides(d)
    return x.reshape(-1, d // gran.group_size, gran.group_size)


def quest_fake_quant(x: torch.Tensor, bits: int, gran: "Granularity | str" = "row",
                     clip: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_q, trust mask, scale) for an already rotated ``x``; no autograd semantics.

    ``scale`` has shape (rows, n_groups); ``clip`` defaults to ``gaussian_optimal_clip(bits)``.
    """
    gran = parse_granularity(gran)
    c = gaussian_optimal_clip(bits) if clip is None else clip
    g = _grouped(x, gran)
    rms = g.square().mean(dim=-1, keepdim=True).sqrt_()
    scale = (c * rms).clamp_min_(_EPS)
    n = 2**bits
    step = scale * (2.0 / (n - 1))
    # Midrise: level k + 1/2 (k in [-n/2, n/2 - 1]) times step; floor = nearest level.
    q = torch.floor(g / step).clamp_(-(n // 2), n // 2 - 1).add_(0.5).mul_(step)
    mask = (q - g).abs_() <= step * 0.5  # |x_q - x| <= scale / (2^b - 1)
    return q.reshape(x.shape), mask.reshape(x.shape), scale.squeeze(-1)


class _MaskedSTE(torch.autograd.Function):
    """Value ``q``; gradient ``grad * mask`` (``mask=None``: identity). One saved bool tensor, no
    extra forward arithmetic (cheaper than the ``q + (x - x.detach()) * mask`` idiom)."""

    @staticmethod
    def forward(ctx, x, q, mask):
        ctx.save_for_backward(mask) if mask is not None else ctx.save_for_backward()
        ctx.has_mask = mask is not None
        return q

    @staticmethod
    def backward(ctx, grad):
        if ctx.has_mask:
            (mask,) = ctx.saved_tensors
            return grad * mask, None, None
        return grad, None, None


def quest_ste(x: torch.Tensor, bits: int | None, gran: "Granularity | str" = "row") -> torch.Tensor:
    """QuEST fake quantization with the trust-masked straight-through gradient."""
    if bits is None:
        return x
    with torch.no_grad():
        q, mask, _ = quest_fake_quant(x.detach(), bits, gran)
    # value q; d out / d x = mask (0 where the value was clipped far outside the grid)
    return _MaskedSTE.apply(x, q.to(x.dtype), mask)


def rtn_ste(x: torch.Tensor, bits: int | None, gran: "Granularity | str" = "row") -> torch.Tensor:
    """Shared-grid RTN fake quantization with a plain straight-through (identity) gradient."""
    if bits is None:
        return x
    with torch.no_grad():
        q = fake_quant_rtn(x.detach(), bits, gran)
    return _MaskedSTE.apply(x, q, None)


def rtn_ste_per_token(x: torch.Tensor, bits: int | None) -> torch.Tensor:
    """Dynamic per-token activation RTN (as compressed-tensors applies at inference), STE gradient."""
    if bits is None:
        return x
    with torch.no_grad():
        q = fake_quant_per_token(x.detach(), bits)
    return _MaskedSTE.apply(x, q, None)
