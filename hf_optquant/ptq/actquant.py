"""Dynamic per-token activation fake-quantization on a model's linear inputs (forward pre-hooks).

Computes what compressed-tensors applies at load time for
``input_activations: {strategy: token, dynamic: true, symmetric: true}``: both use the
shared grid of ``hf_optquant.quant.rtn`` (same scale formula, same rounding and clamping).
"""
from __future__ import annotations

import torch

from ..quant import fake_quant_per_token

__all__ = ["attach_activation_quant"]


def attach_activation_quant(model: torch.nn.Module, names, bits: int | None) -> list:
    """Quantize the input of each named linear per token; returns the hook handles (``.remove()`` undoes)."""
    if bits is None:
        return []
    modules = dict(model.named_modules())

    def hook(module, args):
        return (fake_quant_per_token(args[0], bits), *args[1:])

    return [modules[n].register_forward_pre_hook(hook) for n in names]
