"""Block-diagonal normalised Hadamard transform along the last dimension.

Why dense matmul: no well-kept CPU fast Walsh-Hadamard kernel ships with the package's
dependencies (Dao-AILab's ``fast-hadamard-transform`` is CUDA-only; the pure-PyTorch
``hadamard-transform`` package does log2(n) butterfly passes, each a full read and write
of the tensor). For the 32..128-wide blocks used here one batched matmul against a
cached n x n matrix is a single BLAS/cuBLAS call and measured faster on CPU
(``benchmarks/qat.py`` compares both). The matrix comes from ``scipy.linalg.hadamard``
(Sylvester construction), normalised by 1/sqrt(n): symmetric and orthogonal, so it is
its own inverse and ``(x H)(W H)^T = x W^T``.
"""
from __future__ import annotations

import functools
import math

import torch

__all__ = ["hadamard_matrix", "block_hadamard", "is_power_of_two"]


def is_power_of_two(n: int) -> bool:
    return isinstance(n, int) and n > 0 and (n & (n - 1)) == 0


@functools.lru_cache(maxsize=32)
def _hadamard_cpu(n: int, dtype: torch.dtype) -> torch.Tensor:
    from scipy.linalg import hadamard

    return torch.from_numpy(hadamard(n)).to(torch.float64).div_(math.sqrt(n)).to(dtype)


def hadamard_matrix(n: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The normalised n x n Sylvester Hadamard matrix (n a power of two)."""
    if not is_power_of_two(n):
        raise ValueError(f"Hadamard block size must be a power of two, got {n}")
    return _hadamard_cpu(n, dtype).to(device, copy=True)  # a copy: the cached one stays pristine


def block_hadamard(x: torch.Tensor, block: int, h: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` (..., d) times the block-diagonal matrix diag(H_block, ..., H_block); d % block == 0.

    ``h`` is the block matrix when the caller keeps one on the right device (the fake-quant
    layer holds it as a non-persistent buffer); otherwise it is built on ``x``'s device.
    The transform is its own inverse (H symmetric orthogonal), so this also undoes itself.
    """
    d = x.shape[-1]
    if d % block != 0:
        raise ValueError(f"Hadamard block {block} does not divide the last dimension {d}")
    if h is None:
        h = hadamard_matrix(block, dtype=x.dtype, device=x.device)
    elif h.dtype != x.dtype:
        h = h.to(x.dtype)
    return (x.reshape(*x.shape[:-1], d // block, block) @ h).reshape(x.shape)
