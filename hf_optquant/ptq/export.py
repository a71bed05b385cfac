"""Write quantized weights as a compressed-tensors checkpoint that plain
``AutoModelForCausalLM.from_pretrained`` loads (and vLLM serves, for the schemes it has kernels for).

compressed-tensors' own ``apply_quantization_config`` and ``ModelCompressor`` write the
format; this module hands them our integer codes and scales, so the stored weights are
exactly the ones hf_optquant quantized. Activations are not stored: the config declares
``input_activations: {type: int, symmetric: true, strategy: token, dynamic: true}`` and
compressed-tensors quantizes them at inference, on the same grid as hf_optquant.quant.rtn.

Storage formats: ``int-quantized`` (int8 codes) for W8A8, which vLLM runs with its int8
kernels; ``pack-quantized`` (codes packed into int32) otherwise, which is vLLM's W4A16/W8A16
format and keeps W4A4 checkpoints at 4 bits per weight on disk.

Tied embeddings: when the LM head is quantized the saved config sets
``tie_word_embeddings: false``; the input embedding stays in full precision and the head is
stored quantized (loading a tied config would overwrite one of them with the other).
"""
from __future__ import annotations

import copy
from importlib import metadata
from pathlib import Path

import torch

from ..errors import ConfigError
from ..io import atomic_dir, atomic_write_json, refuse_existing_output
from ..models.linearize import gpt2_as_bigcode, needs_linearizing, permute_qweights
from ..quant import Granularity, dequantize_rtn, qrange
from ..quant.scheme import QuantScheme
from .apply import untie_lm_head

__all__ = ["save_compressed_checkpoint"]


def _check_qweights(modules: dict, qweights: dict, w_bits: int, gran: Granularity) -> None:
    lo, hi = qrange(w_bits)
    for name, (q, s) in qweights.items():
        mod = modules.get(name)
        if not isinstance(mod, torch.nn.Linear):
            raise ConfigError("qweights", f"{name!r} is not a Linear module of the model",
                              "use names from model.named_modules()")
        if tuple(q.shape) != tuple(mod.weight.shape):
            raise ConfigError("qweights", f"codes for {name} have shape {tuple(q.shape)}, the weight "
                              f"{tuple(mod.weight.shape)}", "pass codes shaped like the weight")
        n_groups = {"row": 1, "tensor": 1}.get(gran.kind) or mod.in_features // gran.group_size
        rows = 1 if gran.kind == "tensor" else mod.out_features
        if s.numel() != rows * n_groups:
            raise ConfigError("qweights", f"scales for {name} have {s.numel()} entries, {gran} needs {rows * n_groups}",
                              "pass the scales quantize_rtn returns for that granularity")
        if q.numel() and (q.min() < lo or q.max() > hi):
            raise ConfigError("qweights", f"codes for {name} leave the {w_bits}-bit range [{lo}, {hi}]",
                              "pass codes from quantize_rtn/gptq_quantize with the same w_bits")


def save_compressed_checkpoint(model, out_dir, *, qweights: dict[str, tuple[torch.Tensor, torch.Tensor]],
                               scheme: QuantScheme, tokenizer=None, record: dict, overwrite: bool = False,
                               transform_config=None) -> Path:
    """Save ``model`` with the linears in ``qweights`` (name -> (codes, scales)) quantized as ``scheme`` says
    (its bits, granularity and grid; its targets become the names in ``qweights``).

    Weights dequantize as ``(codes - zero_point) * scale`` (``scheme.symmetric=False``: QuEST's midrise
    levels, zero point -1/2). ``transform_config`` (compressed-tensors ``TransformConfig``) is written to
    ``config.json`` as is; rotations it declares as fused must already be in the weights.

    ``model`` is not modified (its other weights are saved as they are). ``record`` is written
    to ``quantization_record.json`` with the scheme added; never put calibration text in it.
    The directory appears whole or not at all (an existing ``out_dir`` needs ``overwrite``).
    """
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (
        QuantizationConfig,
        apply_quantization_config,
    )

    if not isinstance(scheme, QuantScheme):
        raise ConfigError("scheme", f"must be a QuantScheme, got {type(scheme).__name__}",
                          "pass hf_optquant.quant.QuantScheme(w_bits=..., a_bits=..., granularity=...)")
    scheme.check_exportable()
    gran, w_bits, zero_point = scheme.gran, scheme.w_bits, scheme.zero_point
    if not qweights:
        raise ConfigError("qweights", "nothing to save", "quantize at least one linear layer")
    refuse_existing_output(out_dir, overwrite=overwrite)
    m = copy.deepcopy(model).cpu()
    for mod in m.modules():  # activation fake-quant hooks are hf_optquant's, not the checkpoint's
        mod._forward_pre_hooks.clear()
    linearized = None
    if needs_linearizing(m):  # compressed-tensors quantizes nn.Linear only: GPT-2 goes as GPTBigCode
        n_embd, n_head = m.config.n_embd, m.config.n_head
        m = gpt2_as_bigcode(m)
        qweights = permute_qweights(qweights, n_embd, n_head)
        linearized = "gpt2 -> gpt_bigcode (multi_query=false), c_attn rows reordered per head"
    modules = dict(m.named_modules())
    _check_qweights(modules, qweights, w_bits, gran)
    head_quantized = any(modules[n] is m.get_output_embeddings() for n in qweights)
    if head_quantized:
        untie_lm_head(m)
    for name, (q, s) in qweights.items():
        w = modules[name].weight
        rows = 1 if gran.kind == "tensor" else w.shape[0]  # _check_qweights allows any shape of the right size
        w.data = dequantize_rtn(q.float() - zero_point, s.float().reshape(rows, -1), gran).to(w.dtype)
    # packable=False: GPTBigCode's weight init reads ``c_proj.weight``, which packed layers do not have.
    scheme = scheme.replace(targets=tuple(sorted(qweights)),
                            format=scheme.format if linearized is None else "int-quantized")
    ignore = [n for n, mod in modules.items() if isinstance(mod, torch.nn.Linear) and n not in qweights]
    qcfg = QuantizationConfig(config_groups={"group_0": scheme.to_compressed_tensors()}, ignore=ignore, quantization_status="frozen")
    apply_quantization_config(m, qcfg)
    for name, (_, s) in qweights.items():
        mod = modules[name]
        # Our scales, not an observer's: the stored codes are then exactly ours.
        mod.weight_scale.data = s.reshape(mod.weight_scale.shape).to(mod.weight_scale.dtype)
        mod.weight_zero_point.data.fill_(zero_point)
    if transform_config is not None:
        m.transform_config = transform_config  # ModelCompressor writes it into config.json
    compressor = ModelCompressor.from_pretrained_model(m)
    compressor.compress_model(m)
    rec = dict(record)
    rec.update({"w_bits": w_bits, "a_bits": scheme.a_bits, "granularity": str(gran), "format": "compressed-tensors",
                "storage_format": scheme.storage_format,
                "compressed_tensors_version": metadata.version("compressed-tensors"),
                "quantized_modules": sorted(qweights), "lm_head_quantized": head_quantized,
                "architecture_conversion": linearized})
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        m.save_pretrained(tmp)
        compressor.update_config(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        atomic_write_json(Path(tmp) / "quantization_record.json", rec)
    return Path(out_dir)
