"""Quantize a model's linear layers (RTN or GPTQ) and run it quantized in-process.

The calibration loop feeds GPTQ layer by layer: decoder block ``l`` is quantized from
inputs produced by blocks ``< l`` already quantized, as GPTQ prescribes.
"""
from __future__ import annotations

import copy
import logging

import torch
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..quant import dequantize_rtn, fake_quant_per_token, quantize_rtn
from .config import PTQConfig
from .gptq import gptq_quantize, hessian_update

__all__ = ["target_linears", "quantize_model", "attach_activation_quant"]

logger = logging.getLogger(__name__)


def target_linears(model: torch.nn.Module, *, lm_head: bool = False) -> dict[str, torch.nn.Linear]:
    """Every ``nn.Linear`` of the model; the output embedding only if ``lm_head``."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    out = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and (lm_head or m is not head)}
    if not out:
        raise ConfigError("model", "has no linear layers to quantize", "pass a transformer causal LM")
    return out


def attach_activation_quant(model: torch.nn.Module, names, bits: int | None) -> list:
    """Dynamic per-token fake quantization of each named linear's input (forward pre-hooks)."""
    if bits is None:
        return []
    modules = dict(model.named_modules())
    return [modules[n].register_forward_pre_hook(lambda m, args: (fake_quant_per_token(args[0], bits), *args[1:]))
            for n in names]


def _blocks(model) -> list[torch.nn.Module]:
    for attr in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj = model
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return list(obj)
    raise ConfigError("model", "cannot find the decoder blocks for GPTQ's layer-by-layer calibration",
                      "use method rtn, or a Llama/OLMo/Qwen/GPT-2/NeoX-style model")


@torch.no_grad()
def _gptq(model, targets: dict, cfg: PTQConfig, calibration: torch.Tensor, batch_size: int) -> dict:
    qweights = {}
    modules_by_block = []
    for block in _blocks(model):
        ids = {id(m) for m in block.modules()}
        modules_by_block.append({n: m for n, m in targets.items() if id(m) in ids})
    rest = {n: m for n, m in targets.items() if not any(n in b for b in modules_by_block)}
    if rest:
        modules_by_block.append(rest)
    for group in tqdm(modules_by_block, desc="GPTQ blocks", leave=False):
        stats = {n: [None, 0] for n in group}

        def hook(name):
            def fn(mod, args):
                stats[name][0], stats[name][1] = hessian_update(stats[name][0], stats[name][1], args[0])
            return fn

        handles = [m.register_forward_pre_hook(hook(n)) for n, m in group.items()]
        for i in range(0, calibration.shape[0], batch_size):
            model(input_ids=calibration[i:i + batch_size])
        for h in handles:
            h.remove()
        for n, m in group.items():
            q, s = gptq_quantize(m.weight.data, stats[n][0], cfg.w_bits, cfg.gran, block_size=cfg.block_size,
                                 damp=cfg.damp, act_order=cfg.act_order)
            # Dequantize in float32 from float32 scales, exactly as the checkpoint loader will.
            q, s = q.float(), s.to(torch.float32)
            m.weight.data = dequantize_rtn(q, s, cfg.gran).to(m.weight.dtype)
            qweights[n] = (q.to(torch.int8), s)
    return qweights


def quantize_model(model: torch.nn.Module, cfg: PTQConfig, *, calibration: torch.Tensor | None = None,
                   batch_size: int = 8, inplace: bool = False):
    """Returns ``(quantized model, qweights)``.

    The returned model has dequantized weights and per-token activation fake-quant hooks,
    i.e. it computes what the exported checkpoint computes; ``qweights`` maps each linear's
    name to ``(integer codes, scales)`` for :func:`hf_optquant.ptq.save_compressed_checkpoint`.
    """
    if cfg.method == "gptq" and (calibration is None or calibration.numel() == 0):
        raise ConfigError("calibration", "GPTQ needs calibration data and got none",
                          "pass --calibration ptb (or a text file) with --n-calibration > 0")
    qmodel = model if inplace else copy.deepcopy(model)
    qmodel.eval()
    if cfg.lm_head and getattr(qmodel.config, "tie_word_embeddings", False):
        # A quantized head cannot share the full-precision embedding: untie it.
        head = qmodel.get_output_embeddings()
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
        qmodel.config.tie_word_embeddings = False
    targets = target_linears(qmodel, lm_head=cfg.lm_head)
    for n, m in targets.items():
        cfg.gran.check_divides(m.in_features, f" of {n}")
    if cfg.method == "rtn":
        qweights = {}
        for n, m in targets.items():
            q, s = quantize_rtn(m.weight.data.float(), cfg.w_bits, cfg.gran)
            m.weight.data = dequantize_rtn(q, s, cfg.gran).to(m.weight.dtype)
            qweights[n] = (q.to(torch.int8), s)
    else:
        qweights = _gptq(qmodel, targets, cfg, calibration, batch_size)
    attach_activation_quant(qmodel, list(targets), cfg.a_bits)
    return qmodel, qweights
