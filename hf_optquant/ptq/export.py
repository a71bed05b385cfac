"""Write quantized weights as a compressed-tensors checkpoint that plain
``AutoModelForCausalLM.from_pretrained`` loads (and vLLM serves).

compressed-tensors' own ``apply_quantization_config`` and ``ModelCompressor`` do the
format; this module only hands them our integer codes' scales, so the stored weights are
exactly the ones hf_optquant quantized, and the dynamic per-token activation quantization
that compressed-tensors applies at load time uses the same grid (hf_optquant.quant.rtn).
"""
from __future__ import annotations

import copy
import logging
from importlib import metadata
from pathlib import Path

import torch

from ..errors import ConfigError
from ..io import atomic_dir, atomic_write_json
from ..quant import Granularity, dequantize_rtn, parse_granularity

__all__ = ["save_compressed_checkpoint", "quantization_scheme"]

logger = logging.getLogger(__name__)


def quantization_scheme(w_bits: int, a_bits: int | None, gran: Granularity, targets: list[str]):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    strategy = {"row": "channel", "group": "group", "tensor": "tensor"}[gran.kind]
    weights = QuantizationArgs(num_bits=w_bits, type="int", symmetric=True, strategy=strategy,
                               group_size=gran.group_size if gran.kind == "group" else None)
    acts = None
    if a_bits is not None:
        acts = QuantizationArgs(num_bits=a_bits, type="int", symmetric=True, strategy="token", dynamic=True)
    return QuantizationScheme(targets=targets, weights=weights, input_activations=acts)


def save_compressed_checkpoint(model, out_dir, *, qweights: dict, w_bits: int, a_bits: int | None,
                               granularity, tokenizer=None, record: dict, overwrite: bool = False) -> Path:
    """Save ``model`` with the linears in ``qweights`` (name -> (codes, scales)) quantized.

    ``model`` is not modified. ``record`` goes to ``quantization_record.json`` (never put
    calibration text in it).
    """
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig, apply_quantization_config

    gran = parse_granularity(granularity)
    if not qweights:
        raise ConfigError("qweights", "nothing to save", "quantize at least one linear layer")
    m = copy.deepcopy(model).cpu()
    for mod in m.modules():  # fake-quant hooks are ours, not the checkpoint's
        mod._forward_pre_hooks.clear()
    modules = dict(m.named_modules())
    head = m.get_output_embeddings() if hasattr(m, "get_output_embeddings") else None
    head_name = next((n for n, mod in modules.items() if mod is head), None)
    if head_name in qweights and getattr(m.config, "tie_word_embeddings", False):
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
        m.config.tie_word_embeddings = False
    for name, (q, s) in qweights.items():
        if name not in modules:
            raise ConfigError("qweights", f"{name!r} is not a module of the model", "use names from named_modules()")
        modules[name].weight.data = dequantize_rtn(q.float(), s.float(), gran).to(modules[name].weight.dtype)
    scheme = quantization_scheme(w_bits, a_bits, gran, targets=sorted(qweights))
    ignore = [n for n, mod in modules.items() if isinstance(mod, torch.nn.Linear) and n not in qweights]
    qcfg = QuantizationConfig(config_groups={"group_0": scheme}, ignore=ignore, quantization_status="frozen")
    apply_quantization_config(m, qcfg)
    for name, (q, s) in qweights.items():
        mod = modules[name]
        mod.weight_scale.data = s.reshape(mod.weight_scale.shape).to(mod.weight_scale.dtype)
        mod.weight_zero_point.data.zero_()
    compressor = ModelCompressor.from_pretrained_model(m)
    compressor.compress_model(m)
    rec = dict(record)
    rec.update({"w_bits": w_bits, "a_bits": a_bits, "granularity": str(gran), "format": "compressed-tensors",
                "compressed_tensors_version": metadata.version("compressed-tensors"),
                "quantized_modules": sorted(qweights)})
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        m.save_pretrained(tmp)
        compressor.update_config(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        atomic_write_json(Path(tmp) / "quantization_record.json", rec)
    return Path(out_dir)
