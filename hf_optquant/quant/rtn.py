"""Round-to-nearest symmetric absmax quantization, as plain tensor functions.

Grid convention (one for the whole package): b-bit signed integers
``q in [-2^(b-1), 2^(b-1)-1]`` and ``scale = absmax / ((2^b - 1) / 2)``, zero-point 0.
This is the symmetric convention of ``compressed-tensors`` (``calculate_qparams``),
chosen so that hf_optquant's fake-quant forward and the deployed checkpoint that
plain ``transformers`` loads compute the same numbers (weights and the dynamic
per-token activation quantization alike). The largest-magnitude positive value
lands half a step below its original value (it rounds to 2^(b-1) and is clamped);
the paper states only "symmetric absmax", so this is within its definition.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError

__all__ = [
    "Granularity",
    "parse_granularity",
    "qrange",
    "rtn_scale",
    "quantize_rtn",
    "dequantize_rtn",
    "fake_quant_rtn",
    "fake_quant_per_token",
]

_EPS = 1e-12


@dataclass(frozen=True, kw_only=True)
class Granularity:
    """How scales are shared: one per output ``row``, per ``group`` of ``group_size``
    consecutive input columns, or one per ``tensor``."""

    kind: str = "row"
    group_size: int | None = None

    def __post_init__(self):
        if self.kind not in ("row", "group", "tensor"):
            raise ConfigError("granularity", f"unknown kind {self.kind!r}", "use row, group:G or tensor")
        if self.kind == "group" and (self.group_size is None or self.group_size <= 0):
            raise ConfigError("granularity", "group granularity needs a positive group size", "write group:128")

    def __str__(self) -> str:
        return f"group:{self.group_size}" if self.kind == "group" else self.kind

    def check_divides(self, in_features: int, where: str = "") -> None:
        if self.kind == "group" and in_features % self.group_size != 0:
            raise ConfigError(
                "granularity",
                f"group size {self.group_size} does not divide the input dimension {in_features}{where}",
                "choose a group size that divides every targeted layer's in_features",
            )


def parse_granularity(spec: str | Granularity) -> Granularity:
    if isinstance(spec, Granularity):
        return spec
    s = str(spec).strip().lower()
    if s in ("row", "channel", "per_row"):
        return Granularity(kind="row")
    if s in ("tensor", "per_tensor"):
        return Granularity(kind="tensor")
    if s.startswith("group:"):
        try:
            g = int(s.split(":", 1)[1])
        except ValueError:
            raise ConfigError("granularity", f"cannot read group size in {spec!r}", "write group:128") from None
        return Granularity(kind="group", group_size=g)
    raise ConfigError("granularity", f"unknown granularity {spec!r}", "use row, group:G or tensor")


def qrange(bits: int) -> tuple[int, int]:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _grouped(x: torch.Tensor, gran: Granularity) -> torch.Tensor:
    """View ``x`` (rows, cols) so that the last dim holds the elements sharing a scale."""
    if gran.kind == "row":
        return x.reshape(x.shape[0], 1, -1) if x.dim() == 2 else x.reshape(-1, 1, x.shape[-1])
    if gran.kind == "tensor":
        return x.reshape(1, 1, -1)
    gran.check_divides(x.shape[-1])
    return x.reshape(-1, x.shape[-1] // gran.group_size, gran.group_size)


def rtn_scale(x: torch.Tensor, bits: int, gran: Granularity) -> torch.Tensor:
    """Scales of shape (rows, n_groups) (row: n_groups=1; tensor: (1, 1))."""
    g = _grouped(x, gran)
    absmax = g.abs().amax(dim=-1)
    return (absmax / ((2**bits - 1) / 2)).clamp_min(_EPS)


def quantize_rtn(x: torch.Tensor, bits: int, gran: Granularity | str = "row") -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes (same shape as ``x``, integer-valued float) and scales (rows, n_groups)."""
    gran = parse_granularity(gran)
    scale = rtn_scale(x, bits, gran)
    lo, hi = qrange(bits)
    g = _grouped(x, gran)
    q = torch.clamp(torch.round(g / scale.unsqueeze(-1)), lo, hi)
    return q.reshape(x.shape), scale


def dequantize_rtn(q: torch.Tensor, scale: torch.Tensor, gran: Granularity | str = "row") -> torch.Tensor:
    gran = parse_granularity(gran)
    g = _grouped(q, gran)
    return (g * scale.unsqueeze(-1)).reshape(q.shape)


def fake_quant_rtn(x: torch.Tensor, bits: int | None, gran: Granularity | str = "row") -> torch.Tensor:
    """Quantize then dequantize (no gradient rule: see ``hf_optquant.qat`` for STE)."""
    if bits is None:
        return x
    q, scale = quantize_rtn(x, bits, gran)
    return dequantize_rtn(q, scale, gran).to(x.dtype)


def fake_quant_per_token(x: torch.Tensor, bits: int | None) -> torch.Tensor:
    """Dynamic per-token activation quantization: one scale per vector along the last dim."""
    if bits is None:
        return x
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    return fake_quant_rtn(flat, bits, Granularity(kind="row")).reshape(shape)
