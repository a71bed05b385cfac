"""``QATLinear``: an ``nn.Linear`` that fake-quantizes its weight and input in the forward pass.

It holds the original ``weight``/``bias`` Parameter objects (so tied weights stay tied,
optimizers see the same tensors and ``state_dict`` keys are those of the float model)
and only changes ``forward``. It also wraps transformers' ``Conv1D`` (GPT-2): the Parameter
keeps its (in, out) layout and the quantizers see its transpose, the (out, in) matrix whose
rows are the output channels, so scales are per output channel as for ``nn.Linear``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.anatomy import in_out_features, is_conv1d
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
    conv1d: bool

    def __init__(self, *args, **kwargs):  # pragma: no cover - use from_linear
        raise TypeError("build a QATLinear with QATLinear.from_linear(linear, cfg)")

    @classmethod
    def from_linear(cls, linear: nn.Module, cfg: QATConfig) -> QATLinear:
        """A QATLinear sharing ``linear``'s (an nn.Linear or Conv1D) Parameter objects (no copy)."""
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.in_features, self.out_features = in_out_features(linear)
        self.conv1d = is_conv1d(linear)
        self.weight = linear.weight
        self.bias = linear.bias
        self.quantizer = cfg.quantizer
        self.w_bits, self.a_bits, self.gran = cfg.scheme.w_bits, cfg.scheme.a_bits, cfg.scheme.gran
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

    def to_linear(self) -> nn.Module:
        """The plain layer it wrapped (``nn.Linear`` or ``Conv1D``) on the same Parameter objects."""
        if self.conv1d:
            from transformers.pytorch_utils import Conv1D

            lin = Conv1D.__new__(Conv1D)
            nn.Module.__init__(lin)
            lin.nx, lin.nf = self.in_features, self.out_features
        else:
            lin = nn.Linear.__new__(nn.Linear)
            nn.Module.__init__(lin)
            lin.in_features, lin.out_features = self.in_features, self.out_features
        lin.weight = self.weight
        lin.bias = self.bias
        lin._forward_hooks.update(self._forward_hooks)
        lin._forward_pre_hooks.update(self._forward_pre_hooks)
        return lin

    @property
    def weight_out_in(self) -> torch.Tensor:
        """The weight as (out, in), whatever the wrapped layer's storage layout."""
        return self.weight.t() if self.conv1d else self.weight

    def quantized_weight(self) -> torch.Tensor:
        """The (out, in) weight the forward pass uses (rotated basis for quest), with its gradient rule."""
        w = self.weight_out_in
        if self.quantizer == "quest":
            return quest_ste(block_hadamard(w, self.hadamard_block, self.hadamard), self.w_bits, self.gran)
        return rtn_ste(w, self.w_bits, self.gran)

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantizer == "quest":
            return quest_ste(block_hadamard(x, self.hadamard_block, self.hadamard), self.a_bits, "row")
        return rtn_ste_per_token(x, self.a_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return F.linear(x, self.weight_out_in, self.bias)
        # quest: (x H) (W H)^T = x W^T for orthogonal H, so only the quantization changes the product.
        return F.linear(self.quantized_input(x), self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        extra = f", block={self.hadamard_block}" if self.hadamard_block else ""
        return (f"{super().extra_repr()}, quantizer={self.quantizer}, w_bits={self.w_bits}, a_bits={self.a_bits}, "
                f"granularity={self.gran}{extra}, enabled={self.enabled}"
                + (", conv1d" if self.conv1d else ""))
