"""``QATLinear``: an ``nn.Linear`` that fake-quantizes its weight and input in the forward pass.

It holds the original ``weight``/``bias`` Parameter objects (so tied weights stay tied,
optimizers see the same tensors and ``state_dict`` keys are those of the float model)
and only changes ``forward``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..quant import parse_granularity
from .config import QATConfig
from .hadamard import block_hadamard, hadamard_matrix
from .numerics import quest_ste, rtn_ste, rtn_ste_per_token

__all__ = ["QATLinear"]


class QATLinear(nn.Linear):
    """Fake-quant linear layer. Build with :meth:`from_linear`; undo with :meth:`to_linear`."""

    quantizer: str
    w_bits: int | None
    a_bits: int | None
    hadamard_block: int | None
    enabled: bool

    def __init__(self, *args, **kwargs):  # pragma: no cover - use from_linear
        raise TypeError("build a QATLinear with QATLinear.from_linear(linear, cfg)")

    @classmethod
    def from_linear(cls, linear: nn.Linear, cfg: QATConfig) -> "QATLinear":
        """A QATLinear sharing ``linear``'s Parameter objects (no copy), with ``cfg``'s quantizer."""
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.quantizer = cfg.quantizer
        self.w_bits, self.a_bits = cfg.w_bits, cfg.a_bits
        self.gran = parse_granularity(cfg.granularity)
        self.enabled = cfg.enabled
        self.hadamard_block = cfg.hadamard_block if cfg.quantizer == "quest" else None
        if self.hadamard_block is not None:
            # Non-persistent: moves with .to(device) but never enters the checkpoint.
            h = hadamard_matrix(self.hadamard_block, dtype=linear.weight.dtype, device=linear.weight.device)
            self.register_buffer("hadamard", h, persistent=False)
        # Keep hooks other libraries attached (e.g. accelerate's device hooks).
        self._forward_hooks.update(linear._forward_hooks)
        self._forward_pre_hooks.update(linear._forward_pre_hooks)
        return self

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` on the same Parameter objects."""
        lin = nn.Linear.__new__(nn.Linear)
        nn.Module.__init__(lin)
        lin.in_features, lin.out_features = self.in_features, self.out_features
        lin.weight = self.weight
        lin.bias = self.bias
        lin._forward_hooks.update(self._forward_hooks)
        lin._forward_pre_hooks.update(self._forward_pre_hooks)
        return lin

    def quantized_weight(self) -> torch.Tensor:
        """The weight the forward pass uses (rotated basis for quest), with its gradient rule."""
        if self.quantizer == "quest":
            return quest_ste(block_hadamard(self.weight, self.hadamard_block, self.hadamard), self.w_bits, self.gran)
        return rtn_ste(self.weight, self.w_bits, self.gran)

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantizer == "quest":
            return quest_ste(block_hadamard(x, self.hadamard_block, self.hadamard), self.a_bits, "row")
        return rtn_ste_per_token(x, self.a_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return F.linear(x, self.weight, self.bias)
        # quest: (x H) (W H)^T = x W^T for orthogonal H, so only the quantization changes the product.
        return F.linear(self.quantized_input(x), self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        extra = f", block={self.hadamard_block}" if self.hadamard_block else ""
        return (f"{super().extra_repr()}, quantizer={self.quantizer}, w_bits={self.w_bits}, a_bits={self.a_bits}, "
                f"granularity={self.gran}{extra}, enabled={self.enabled}")
