"""Quantize a model's linear layers (RTN or GPTQ) and run it quantized in-process.

The returned model computes what the exported checkpoint computes once plain
``transformers`` loads it: dequantized weights from the same codes and float32 scales,
and dynamic per-token activation fake-quant on the same grid.
"""
from __future__ import annotations

import copy

import torch

from ..errors import ConfigError
from ..models.anatomy import block_linears, conv1d_to_linear
from ..quant import dequantize_rtn, quantize_rtn
from ..quant.scheme import matches_target
from .actquant import attach_activation_quant
from .calibrate import sequential_quantize
from .config import PTQConfig
from .gptq import gptq_quantize

__all__ = ["target_linears", "quantize_model", "untie_lm_head"]


def target_linears(model: torch.nn.Module, *, targets: tuple[str, ...] = (),
                   lm_head: bool = False) -> dict[str, torch.nn.Linear]:
    """The linears PTQ quantizes: those in the decoder blocks (optionally those matching a ``targets``
    pattern, :func:`hf_optquant.quant.scheme.matches_target`), plus the output embedding if ``lm_head`` (``hf_optquant.models.anatomy``; Conv1D
    layers must have been turned into nn.Linear first, as :func:`quantize_model` does)."""
    head = model.get_output_embeddings()
    out = {n: m for n, m in block_linears(model, lm_head=lm_head).items()
           if m is head or not targets or any(matches_target(t, n) for t in targets)}
    conv = [n for n, m in out.items() if not isinstance(m, torch.nn.Linear)]
    if conv:
        raise ConfigError("model", f"{conv[0]} is a transformers Conv1D", "call conv1d_to_linear(model) first")
    if not out:
        raise ConfigError("targets", f"no linear layer of the model matches {list(targets) or 'the decoder blocks'}",
                          "name suffixes of the model's linears, e.g. q_proj, or leave targets empty")
    return out


def untie_lm_head(model: torch.nn.Module) -> None:
    """Give the LM head its own weight: a quantized head must not change the embedding table."""
    if getattr(model.config, "tie_word_embeddings", False):
        head = model.get_output_embeddings()
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
        model.config.tie_word_embeddings = False


def _set_quantized(module: torch.nn.Linear, q: torch.Tensor, s: torch.Tensor, gran) -> tuple[torch.Tensor, torch.Tensor]:
    # float32 scales and dequantization, exactly as compressed-tensors decompresses the checkpoint.
    q, s = q.to(torch.int8), s.to(torch.float32)
    module.weight.data = dequantize_rtn(q.float(), s, gran).to(module.weight.dtype)
    return q, s


@torch.no_grad()
def quantize_model(model: torch.nn.Module, cfg: PTQConfig, *, calibration: torch.Tensor | None = None,
                   batch_size: int = 8, inplace: bool = False):
    """``(quantized model, qweights)``; ``qweights`` maps each quantized linear's name to
    ``(int8 codes, float32 scales)`` for :func:`hf_optquant.ptq.save_compressed_checkpoint`.

    GPTQ needs ``calibration`` (token ids, n x seq_len). The input model is left unchanged
    unless ``inplace``.
    """
    if cfg.method == "gptq" and (calibration is None or calibration.numel() == 0):
        raise ConfigError("calibration", "GPTQ needs calibration data and got none",
                          "pass --calibration ptb (or a text file) with --n-calibration > 0")
    qmodel = model if inplace else copy.deepcopy(model)
    qmodel.eval()
    conv1d_to_linear(qmodel)  # GPT-2: the RTN/GPTQ math works on (out, in) nn.Linear weights
    if cfg.lm_head:
        untie_lm_head(qmodel)
    scheme = cfg.scheme
    targets = target_linears(qmodel, targets=scheme.targets, lm_head=cfg.lm_head)
    gran = scheme.gran
    for n, m in targets.items():
        gran.check_divides(m.in_features, f" of {n}")
    qweights: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if cfg.method == "rtn":
        for n, m in targets.items():
            qweights[n] = _set_quantized(m, *quantize_rtn(m.weight.data.float(), scheme.w_bits, gran), gran)
        attach_activation_quant(qmodel, list(targets), scheme.a_bits)
    else:
        def one_layer(name, module, H):
            q, s = gptq_quantize(module.weight.data, H, scheme.w_bits, gran, block_size=cfg.block_size,
                                 damp=cfg.damp, act_order=cfg.act_order)
            qweights[name] = _set_quantized(module, q, s, gran)

        device = next(qmodel.parameters()).device
        sequential_quantize(qmodel, targets, calibration.to(device), one_layer, a_bits=scheme.a_bits,
                            batch_size=batch_size)
    return qmodel, qweights
