"""``convert_qat``: a QAT-trained model -> compressed-tensors checkpoint (the PTQ export format).

``rtn`` QAT trains on exactly the grid the checkpoint stores (hf_optquant.quant.rtn, the
compressed-tensors symmetric convention), and compressed-tensors applies the same dynamic
per-token activation quantization at load time: the conversion is lossless.

``quest`` QAT trains on a midrise grid in a Hadamard-rotated basis. The checkpoint keeps
the rotation (``hf_optquant.qat.deploy``): weights stored exactly as QuEST quantized them
in the rotated basis, the online Hadamard of the inputs in compressed-tensors'
``transform_config``; ``load_quest(path)`` reproduces the QAT forward from it. transformers
5.24 ignores ``transform_config`` (its quantizer only calls ``apply_quantization_config``),
so plain ``from_pretrained`` of a QuEST checkpoint runs rotated weights on unrotated inputs.
``convert_qat(..., quest_form="folded")`` writes the older rotation-free approximation
(``Q(W H) H`` re-quantized on the shared grid, per-token RTN activations without rotation)
for runtimes without transform support; it loses part of what QAT gained (docs/qat.md).
"""
from __future__ import annotations

import copy
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..io import refuse_existing_output
from ..quant import dequantize_rtn, quantize_rtn
from .config import QATConfig, read_qat_record
from .deploy import quest_transform_config, quest_weight_codes
from .hadamard import block_hadamard
from .numerics import quest_fake_quant
from .prepare import qat_modules, strip_qat

__all__ = ["convert_qat", "deployed_qweights", "quest_deployed_weight", "load_qat_run", "QUEST_FORMS"]

QUEST_FORMS = ("rotated", "folded")


def quest_deployed_weight(weight: torch.Tensor, bits: int, gran, block: int) -> torch.Tensor:
    """QuEST's effective weight in the original basis, ``Q(W H) H`` (float64)."""
    w = weight.detach().to(torch.float64)
    q, _, _ = quest_fake_quant(block_hadamard(w, block), bits, gran)
    return block_hadamard(q, block)


def deployed_qweights(model: nn.Module, quest_form: str = "rotated"
                      ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, float]]:
    """``{name: (codes, scales)}`` for every QAT layer. quest ``rotated``: QuEST's own codes of
    ``W H`` (dequantize as ``(codes + 1/2) * scale``); quest ``folded``: the shared grid in the
    original basis, with each layer's relative change ``|W_deploy - Q(WH)H| / |Q(WH)H|``."""
    out, drift = {}, {}
    for name, m in qat_modules(model).items():
        if m.w_bits is None:
            continue
        if m.quantizer == "quest" and quest_form == "rotated":
            q, s = quest_weight_codes(m.weight_out_in, m.w_bits, m.gran, m.hadamard_block, m.hadamard)
            out[name] = (q, s)
            continue
        if m.quantizer == "quest":
            eff = quest_deployed_weight(m.weight_out_in, m.w_bits, m.gran, m.hadamard_block)
            q, s = quantize_rtn(eff, m.w_bits, m.gran)
            drift[name] = float((dequantize_rtn(q, s, m.gran) - eff).norm() / eff.norm().clamp_min(1e-30))
        else:
            q, s = quantize_rtn(m.weight_out_in.detach().float(), m.w_bits, m.gran)
        out[name] = (q.to(torch.int8), s.to(m.weight.dtype))
    return out, drift


def _qat_config(model: nn.Module) -> QATConfig:
    cfg = getattr(model, "hf_optquant_qat_config", None)
    if cfg is None:
        base = getattr(model, "get_base_model", None)
        cfg = getattr(base(), "hf_optquant_qat_config", None) if callable(base) else None
    if cfg is None or not qat_modules(model):
        raise ConfigError("model", "has no QAT layers to convert", "call prepare_qat(model, cfg) and train it first")
    return cfg


def convert_qat(model: nn.Module, out_dir, *, tokenizer=None, record: dict | None = None,
                overwrite: bool = False, quest_form: str = "rotated") -> Path:
    """Write the QAT-trained ``model`` as a compressed-tensors checkpoint at ``out_dir``.

    peft models are merged first (on a copy). ``model`` itself is not modified. rtn checkpoints
    reload exactly with plain ``AutoModelForCausalLM.from_pretrained``; quest checkpoints
    (``quest_form="rotated"``) with :func:`hf_optquant.qat.load_quest`.
    """
    from ..ptq import save_compressed_checkpoint

    cfg = _qat_config(model)
    if cfg.scheme.w_bits is None:
        raise ConfigError("qat.w_bits", "is none: a compressed-tensors checkpoint needs quantized weights",
                          "train with w_bits 2-8, or save the model with save_pretrained")
    if quest_form not in QUEST_FORMS:
        raise ConfigError("quest_form", f"unknown form {quest_form!r}", f"use one of {', '.join(QUEST_FORMS)}")
    rotated = cfg.quantizer == "quest" and quest_form == "rotated"
    out_dir = Path(out_dir)
    refuse_existing_output(out_dir, overwrite=overwrite, fix="choose a new output directory or pass overwrite=True")
    m = copy.deepcopy(model)
    if callable(getattr(m, "merge_and_unload", None)):  # peft: fold the adapters into the base weights
        m = m.merge_and_unload()
    qweights, drift = deployed_qweights(m, quest_form)
    strip_qat(m)
    rec = {
        "method": f"{cfg.quantizer}-qat",
        "calibration_samples": 0,
        "source_model": getattr(getattr(m, "config", None), "_name_or_path", None) or None,
        "hf_optquant_version": metadata.version("hf_optquant"),
        "qat": cfg.to_dict(),
        "deployed_form": ("exact QuEST in the rotated basis: weights Q(WH) stored, online block Hadamard of "
                          "the inputs in transform_config, QuEST activations via hf_optquant.qat.load_quest" if rotated
                          else "shared-grid weights in the original basis (Q(WH)H re-quantized), per-token RTN "
                          "activations without rotation" if cfg.quantizer == "quest" else "exact (same grid as training)"),
    }
    if cfg.quantizer == "quest":
        rec["quest_form"] = quest_form
    if drift:
        rec["quest_requantization_rel_error"] = {"mean": sum(drift.values()) / len(drift), "max": max(drift.values())}
    rec.update(record or {})
    # QuEST's rotated form stores its midrise levels: an asymmetric grid (zero point -1/2) in the rotated basis.
    scheme = cfg.scheme.replace(symmetric=not rotated)
    transform = quest_transform_config(sorted(qweights), cfg.hadamard_block) if rotated else None
    return save_compressed_checkpoint(m, out_dir, qweights=qweights, scheme=scheme, tokenizer=tokenizer, record=rec,
                                      overwrite=overwrite, transform_config=transform)


def load_qat_run(run_dir, **from_pretrained_kwargs) -> nn.Module:
    """A trained run dir (``hf-optquant train`` with a ``qat`` block) loaded and prepared as it was
    trained, ready for :func:`convert_qat` (its ``run.json`` holds the QAT config)."""
    from transformers import AutoModelForCausalLM

    from ..io import read_json
    from .prepare import prepare_qat

    run_dir = Path(run_dir)
    rec_path = run_dir / "run.json"
    if not rec_path.exists():
        raise ConfigError("run", f"{run_dir} has no run.json", "give a finished training run dir")
    qat = read_qat_record(read_json(rec_path), where=str(rec_path))
    if qat is None:
        raise ConfigError("run", f"{run_dir} was not trained with QAT (run.json: qat is null)",
                          "use hf-optquant ptq for a full-precision run")
    model = AutoModelForCausalLM.from_pretrained(run_dir, **from_pretrained_kwargs)
    return prepare_qat(model, qat)
