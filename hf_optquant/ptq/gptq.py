"""GPTQ (Frantar et al. 2022) as plain tensor functions: Hessian statistics and the
block-wise quantization with error feedback. No hooks or models here.

Written here because the maintained implementations (llm-compressor, gptqmodel) pin
transformers/huggingface_hub or numpy versions this package cannot depend on.
"""
from __future__ import annotations

import torch

from ..quant import Granularity, qrange, rtn_scale

__all__ = ["hessian_update", "gptq_quantize"]


def hessian_update(H: torch.Tensor | None, n: int, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Running ``H = 2/n sum x x^T`` over the rows of ``x`` (tokens x in_features), in float64."""
    x = x.reshape(-1, x.shape[-1]).to(torch.float64)
    m = x.shape[0]
    if H is None:
        H = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    H = H * (n / (n + m)) + (2.0 / (n + m)) * (x.T @ x)
    return H, n + m


def _column_scales(W: torch.Tensor, bits: int, gran: Granularity) -> torch.Tensor:
    """(out, in) scale for every weight entry, from the original weights (static groups)."""
    scale = rtn_scale(W, bits, gran)  # (out, n_groups) or (1, 1)
    if gran.kind == "group":
        return scale.repeat_interleave(gran.group_size, dim=1)
    return scale.expand(W.shape[0], W.shape[1]) if gran.kind == "tensor" else scale.expand(-1, W.shape[1])


def gptq_quantize(W: torch.Tensor, H: torch.Tensor, bits: int, gran: Granularity, *, block_size: int = 128,
                  damp: float = 0.01, act_order: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes (shape of ``W``) and scales (``rtn_scale`` shape) minimising ``||(W - Q) X||``.

    Scales are fixed from the original weights before the sweep (GPTQ's "static groups"),
    which keeps act-order compatible with per-group scales and with the export format.
    """
    gran.check_divides(W.shape[1])
    W = W.detach().to(torch.float64).clone()
    scales = rtn_scale(W, bits, gran)
    S = _column_scales(W, bits, gran)
    H = H.to(torch.float64).clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    perm = torch.argsort(torch.diag(H), descending=True) if act_order else torch.arange(W.shape[1])
    inv = torch.argsort(perm)
    W, S, H = W[:, perm], S[:, perm], H[perm][:, perm]
    H += damp * torch.mean(torch.diag(H)) * torch.eye(H.shape[0], dtype=H.dtype)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    lo, hi = qrange(bits)
    Q = torch.zeros_like(W)
    cols = W.shape[1]
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        Err = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w = W1[:, i]
            s = S[:, i1 + i]
            q = torch.clamp(torch.round(w / s), lo, hi)
            Q[:, i1 + i] = q
            err = (w - q * s) / Hinv1[i, i]
            W1[:, i:] -= err.unsqueeze(1) * Hinv1[i, i:].unsqueeze(0)
            Err[:, i] = err
        W[:, i2:] -= Err @ Hinv[i1:i2, i2:]
    return Q[:, inv], scales
