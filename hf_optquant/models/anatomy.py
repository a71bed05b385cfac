"""Model anatomy shared by QAT, PTQ and diagnostics: where a causal LM keeps its decoder blocks,
which of their modules are linear layers, and how to read a linear's weight as (out, in).

Linear layers are ``torch.nn.Linear`` and transformers' ``Conv1D`` (GPT-2 and relatives), whose
weight is stored transposed, as (in, out), and computes ``x @ W + b``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["BLOCK_PATHS", "FINAL_NORM_PATHS", "is_conv1d", "is_linear_like", "weight_is_in_out", "in_out_features",
           "weight_out_in",
           "decoder_blocks", "block_linears", "conv1d_to_linear"]

# Where common HF causal LMs keep their decoder blocks (Llama/OLMo/Qwen/Mistral/Phi, OPT, GPT-2, GPT-NeoX, MPT).
BLOCK_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "transformer.blocks")
# The norm between the last block and the LM head, for the same families (MPT: norm_f, Phi: final_layernorm).
FINAL_NORM_PATHS = ("model.norm", "model.decoder.final_layer_norm", "transformer.ln_f", "gpt_neox.final_layer_norm",
                    "transformer.norm_f", "model.final_layernorm")


def is_conv1d(module: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, Conv1D)


def is_linear_like(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or is_conv1d(module)


def weight_is_in_out(module: nn.Module) -> bool:
    """Is the module's ``weight`` stored (in, out)? Conv1D, and a QAT layer wrapping one (``QATLinear``
    is an nn.Linear subclass but keeps the wrapped Conv1D's Parameter and layout)."""
    return is_conv1d(module) or bool(getattr(module, "conv1d", False))


def in_out_features(module: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of a Linear or Conv1D."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if is_conv1d(module):
        return tuple(module.weight.shape)  # Conv1D stores (in, out)
    raise TypeError(f"{type(module).__name__} is not a linear layer")


def weight_out_in(module: nn.Module) -> torch.Tensor:
    """The weight as (out, in) (a transposed view for Conv1D; gradients flow to the stored Parameter)."""
    return module.weight.t() if weight_is_in_out(module) else module.weight


def decoder_blocks(model: nn.Module) -> tuple[str, list[nn.Module]]:
    """``(path, blocks)`` of the model's decoder blocks."""
    for path in BLOCK_PATHS:
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        if isinstance(obj, nn.ModuleList) and len(obj):
            return path, list(obj)
    raise ConfigError("model", "cannot find the decoder blocks (model.layers, transformer.h, ...)",
                      "use a Llama/OLMo/Qwen/Mistral/Phi/OPT/GPT-2/NeoX-style causal LM")


def block_linears(model: nn.Module, *, lm_head: bool = True) -> dict[str, nn.Module]:
    """``{name: module}`` of every Linear/Conv1D inside the decoder blocks, plus the output embedding
    when ``lm_head`` and it is a linear layer. The paper's QAT/PTQ layer set on any architecture."""
    _, blocks = decoder_blocks(model)
    in_blocks = {id(m) for b in blocks for m in b.modules()}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    out = {}
    for name, m in model.named_modules():
        if not is_linear_like(m):
            continue
        if m is head:
            if lm_head:
                out[name] = m
        elif id(m) in in_blocks:
            out[name] = m
    return out


def conv1d_to_linear(model: nn.Module) -> list[str]:
    """Replace every Conv1D by the equivalent ``nn.Linear`` (weight transposed, same bias Parameter),
    in place, keeping module names. For in-memory work only (PTQ math, diagnostics): a model saved
    afterwards no longer matches its architecture's Conv1D layout. Returns the replaced names."""
    names = [n for n, m in model.named_modules() if is_conv1d(m)]
    for name in names:
        conv = model.get_submodule(name)
        d_in, d_out = in_out_features(conv)
        lin = nn.Linear(d_in, d_out, bias=conv.bias is not None, device="meta")
        lin.weight = nn.Parameter(conv.weight.detach().t().contiguous(), requires_grad=conv.weight.requires_grad)
        if conv.bias is not None:
            lin.bias = conv.bias
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, lin)
    return names
