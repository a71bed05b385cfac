"""QAT fake-quantization math as plain tensor functions (forward value + gradient rule).

* ``rtn_ste``: the shared RTN grid (``hf_optquant.quant.rtn``, compressed-tensors'
  symmetric convention) with a plain straight-through estimator (identity gradient).
* ``quest_fake_quant`` / ``quest_ste``: QuEST (docs/method.md section 5) on an already
  Hadamard-rotated tensor: scale = c(bits) x RMS of each row (or group, or the tensor)
  + 1e-8, a symmetric midrise grid of 2^b levels spanning [-scale, scale] (step
  2 scale/(2^b-1)), and a gradient that passes only where |x_q - x| <= RMS x c/(2^b-1)
  (the "trust" mask). The scale itself gets no gradient (the quantized value is
  detached). Each of these follows the authors' ``HadamardTrustQuantizer``
  (IST-DASLab/QuEST, src/models/quantization/base_linear.py) operation for operation.

c(bits) (``gaussian_optimal_clip``) is the authors' table ``OPTIMAL_GAUSSIAN_SCALES``:
the clipping level, in units of the standard deviation, that minimises the expected
squared error of that grid on N(0, 1), as found by their derivation (notebooks/
mse_fitting.ipynb): ``scipy.optimize.minimize(..., x0=2.0, bounds=(0.1, 10),
method="L-BFGS-B")`` with default tolerances. The objective is very flat at its minimum,
so L-BFGS-B stops a little short of it (4 bits: 2.5139306 vs the exact minimiser
2.5140046, an MSE excess of 6e-9 relative; 8 bits: 3.8849 vs 3.9222, 0.15%).
The constants are kept as the authors trained with them, because rounding decisions
(and hence a whole model's logits) depend on the sixth digit: with the exact minimiser a
QAT model's logits differ from the reference's by ~2% instead of ~2e-4.
``derive_gaussian_clip(bits)`` reruns the derivation and ``exact=True`` gives the true
minimiser; the tests check both against this table.
"""
from __future__ import annotations

import functools
import math

import torch

from ..quant import Granularity, fake_quant_per_token, fake_quant_rtn, parse_granularity

__all__ = ["QUEST_GAUSSIAN_CLIP", "gaussian_optimal_clip", "derive_gaussian_clip", "gaussian_grid_mse",
           "quest_fake_quant", "quest_ste", "rtn_ste", "rtn_ste_per_token"]

# The authors' OPTIMAL_GAUSSIAN_SCALES (QuEST, base_linear.py).
QUEST_GAUSSIAN_CLIP: dict[int, float] = {
    1: 0.7978845587140913,
    2: 1.4935346200015913,
    3: 2.051068354131873,
    4: 2.513930578568423,
    5: 2.9160938834961225,
    6: 3.276597282593217,
    7: 3.6010497188221655,
    8: 3.884938678807525,
}
# Added to the scale (not a clamp), as the reference does: a zero row quantizes to +-step/2 = +-1e-8/15.
_EPS = 1e-8


def gaussian_grid_mse(clip: float, bits: int) -> float:
    """E[(x - Q(x))^2] for x ~ N(0, 1) and Q the 2^b-level midrise grid on [-clip, clip].

    Closed form per cell [a, b] with level l: int (x-l)^2 phi = [Phi - x phi]_a^b
    + 2 l [phi]_a^b + l^2 [Phi]_a^b (the outer cells extend to +-infinity).
    """
    from scipy.special import ndtr

    n = 2**bits
    step = 2.0 * clip / (n - 1)
    levels = [-clip + i * step for i in range(n)]
    edges = [-math.inf] + [lv + step / 2 for lv in levels[:-1]] + [math.inf]

    def phi(x):
        return 0.0 if math.isinf(x) else math.exp(-x * x / 2) / math.sqrt(2 * math.pi)

    def xphi(x):
        return 0.0 if math.isinf(x) else x * phi(x)

    total = 0.0
    for lv, a, b in zip(levels, edges[:-1], edges[1:]):
        dPhi = float(ndtr(b) - ndtr(a))
        total += (dPhi - (xphi(b) - xphi(a))) + 2 * lv * (phi(b) - phi(a)) + lv * lv * dPhi
    return total


def gaussian_optimal_clip(bits: int) -> float:
    """Gaussian MSE-optimal clipping level c(bits) as the QuEST authors use it (4 bits: 2.5139306)."""
    try:
        return QUEST_GAUSSIAN_CLIP[bits]
    except KeyError:
        raise ValueError(f"QuEST clipping constants exist for 1-8 bits, got {bits!r}") from None


@functools.cache
def derive_gaussian_clip(bits: int, exact: bool = False) -> float:
    """Recompute c(bits): the authors' L-BFGS-B run (``exact=False``, reproduces the table to <= 2e-5
    relative) or the true minimiser of :func:`gaussian_grid_mse` (``exact=True``, bounded Brent)."""
    from scipy.optimize import minimize, minimize_scalar

    if exact:
        res = minimize_scalar(gaussian_grid_mse, bounds=(0.5, 8.0), args=(bits,), method="bounded",
                              options={"xatol": 1e-9})
        return float(res.x)
    res = minimize(lambda a: gaussian_grid_mse(float(a[0]), bits), [2.0], bounds=[(0.1, 10.0)], method="L-BFGS-B")
    return float(res.x[0])


def _grouped(x: torch.Tensor, gran: Granularity) -> torch.Tensor:
    """View ``x`` (..., d) as (rows, n_groups, group) so that the last dim shares one scale."""
    d = x.shape[-1]
    if gran.kind == "tensor":
        return x.reshape(1, 1, -1)
    if gran.kind == "row":
        return x.reshape(-1, 1, d)
    gran.check_divides(d)
    return x.reshape(-1, d // gran.group_size, gran.group_size)


def quest_fake_quant(x: torch.Tensor, bits: int, gran: Granularity | str = "row",
                     clip: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_q, trust mask, scale) for an already rotated ``x``; no autograd semantics.

    ``scale`` has shape (rows, n_groups); ``clip`` defaults to ``gaussian_optimal_clip(bits)``.
    """
    gran = parse_granularity(gran)
    c = gaussian_optimal_clip(bits) if clip is None else clip
    g = _grouped(x, gran)
    rms = g.square().mean(dim=-1, keepdim=True).sqrt_()
    scale = c * rms + _EPS
    n = 2**bits
    step = scale * (2.0 / (n - 1))
    # Midrise levels (k + 1/2) step, k in [-n/2, n/2 - 1]: clamp to the outer levels and round(x/step + 1/2)
    # as the reference does (same rounding decisions); the level is then formed as (k + 1/2) * step, one
    # rounding, which is exactly how compressed-tensors dequantizes the exported codes (zero point -1/2).
    q = torch.round(torch.maximum(torch.minimum(g, scale), -scale).div_(step).add_(0.5)).sub_(0.5).mul_(step)
    mask = (q - g).abs_() <= rms * (c / (n - 1))  # the trust region, in units of the RMS as the reference
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


def quest_ste(x: torch.Tensor, bits: int | None, gran: Granularity | str = "row") -> torch.Tensor:
    """QuEST fake quantization with the trust-masked straight-through gradient."""
    if bits is None:
        return x
    with torch.no_grad():
        q, mask, _ = quest_fake_quant(x.detach(), bits, gran)
    # value q; d out / d x = mask (0 where the value was clipped far outside the grid)
    return _MaskedSTE.apply(x, q.to(x.dtype), mask)


def rtn_ste(x: torch.Tensor, bits: int | None, gran: Granularity | str = "row") -> torch.Tensor:
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
