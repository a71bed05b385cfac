"""GPTQ (Frantar et al. 2022) as plain tensor functions: Hessian statistics, damping,
the Cholesky factor of the inverse Hessian and the block-wise quantization with error
feedback. No hooks or models here (the layer-by-layer loop is in ``calibrate.py``).

Written here because the maintained implementations (llm-compressor, gptqmodel) pin
transformers/huggingface_hub or numpy versions this package cannot depend on;
``benchmarks/ptq.py`` compares this one with them.
"""
from __future__ import annotations

import torch

from ..quant import Granularity, parse_granularity, qrange, rtn_scale

__all__ = ["hessian_update", "dampen", "inverse_hessian_cholesky", "gptq_quantize", "reconstruction_error"]


def hessian_update(H: torch.Tensor | None, n: int, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Running mean ``H = 2/n sum_t x_t x_t^T`` over the rows of ``x`` (tokens x in_features).

    Accumulated in float64: with thousands of calibration tokens float32 sums lose the
    small eigenvalues that the Cholesky factorisation below depends on.
    """
    x = x.reshape(-1, x.shape[-1]).to(torch.float64)
    m = x.shape[0]
    if H is None:
        H = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
    H = H * (n / (n + m)) + (2.0 / (n + m)) * (x.T @ x)
    return H, n + m


def dampen(H: torch.Tensor, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(H + damp * mean(diag H) * I, dead)`` with dead (never-active) inputs given a unit diagonal.

    ``dead`` marks input columns whose Hessian diagonal is zero: their weights cannot
    influence the output on the calibration data, so GPTQ zeroes them (as the reference does).
    """
    H = H.to(torch.float64).clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    return H, dead


def inverse_hessian_cholesky(H: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor of ``H^-1``: its rows hold the sequential OBS updates GPTQ needs."""
    L = torch.linalg.cholesky(H)
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)


@torch.no_grad()
def gptq_quantize(W: torch.Tensor, H: torch.Tensor, bits: int, gran: Granularity | str = "row", *,
                  block_size: int = 128, damp: float = 0.01,
                  act_order: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes (shape of ``W``) and scales (``quantize_rtn``'s shape) minimising ``||(W - Q) X||^2``.

    Scales follow the shared RTN grid (``hf_optquant.quant.rtn``). ``row``/``tensor``: one
    scale from the original weights, as reference GPTQ does. ``group``: without act-order
    each group's scale is taken from the error-updated weights when the sweep reaches the
    group (reference GPTQ); with act-order the groups' scales are fixed from the original
    weights first ("static groups"), so codes stay in natural column order and the
    checkpoint needs no ``g_idx`` permutation.
    """
    gran = parse_granularity(gran)
    gran.check_divides(W.shape[1])
    rows, cols = W.shape
    W = W.detach().to(torch.float64).clone()
    H, dead = dampen(H, damp)
    W[:, dead] = 0.0
    lo, hi = qrange(bits)

    static = gran.kind != "group" or act_order
    scales = rtn_scale(W, bits, gran)  # (rows, n_groups) or (1, 1)
    if gran.kind == "group":
        col_scale = scales.repeat_interleave(gran.group_size, dim=1)
    else:
        col_scale = scales.expand(rows, cols)
    col_scale = col_scale.clone()

    perm = torch.argsort(torch.diag(H), descending=True) if act_order else torch.arange(cols, device=W.device)
    W, col_scale, H = W[:, perm], col_scale[:, perm], H[perm][:, perm]
    Hinv = inverse_hessian_cholesky(H)
    if not static:
        # Lazy block updates are exact, so the block size only sets speed; aligning blocks to
        # groups lets each group's scale see every update made before the sweep reaches it.
        block_size = gran.group_size * max(1, round(block_size / gran.group_size))

    Q = torch.zeros_like(W)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        Err = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            c = i1 + i
            if not static and c % gran.group_size == 0:
                # The group's scale from the weights as error feedback has left them.
                s_new = rtn_scale(W1[:, i:i + gran.group_size], bits, Granularity(kind="row"))
                col_scale[:, c:c + gran.group_size] = s_new
                scales[:, c // gran.group_size] = s_new[:, 0]
            w = W1[:, i]
            s = col_scale[:, c]
            q = torch.clamp(torch.round(w / s), lo, hi)
            Q[:, c] = q
            err = (w - q * s) / Hinv1[i, i]
            W1[:, i:] -= err.unsqueeze(1) * Hinv1[i, i:].unsqueeze(0)
            Err[:, i] = err
        W[:, i2:] -= Err @ Hinv[i1:i2, i2:]
    inv = torch.argsort(perm)
    return Q[:, inv], scales


def reconstruction_error(W: torch.Tensor, W_hat: torch.Tensor, H: torch.Tensor) -> float:
    """Mean squared output error ``tr((W - W_hat) H (W - W_hat)^T) / (2 rows)`` for ``H = 2/n X^T X``.

    Equal to ``||(W - W_hat) X^T||_F^2 / (n rows)``: the per-output-element error on the
    calibration tokens, without keeping the tokens.
    """
    D = (W.to(torch.float64) - W_hat.to(torch.float64))
    return float(torch.einsum("ij,jk,ik->", D, H.to(torch.float64), D) / (2 * W.shape[0]))
