"""Second GPTQ backend: ``optimum``'s GPTQQuantizer with gptqmodel kernels, through
transformers' ``GPTQConfig``, for users who want the GPTQ (gptqmodel) checkpoint format.

Optional extra (``pip install hf_optquant[gptq]``): gptqmodel pins numpy and kernels that
hf_optquant cannot depend on. Weight-only (activations stay in full precision), as that format is.
"""
from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

from ..errors import ConfigError
from ..io import OUT_EXISTS_FIX, atomic_dir, atomic_write_json, refuse_existing_output
from .config import PTQConfig

__all__ = ["optimum_available", "run_optimum_gptq"]


def optimum_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("optimum", "gptqmodel"))


def run_optimum_gptq(model_path: str, out_dir: str, cfg: PTQConfig, *, calibration_texts: list[str],
                     overwrite: bool = False) -> Path:
    """Quantize with ``transformers.GPTQConfig`` (optimum + gptqmodel) and save in the GPTQ format."""
    if not optimum_available():
        raise ConfigError("backend", "the optimum GPTQ backend needs the optional packages optimum and gptqmodel",
                          "pip install 'hf_optquant[gptq]', or use --backend hf_optquant (compressed-tensors)")
    scheme = cfg.scheme
    if scheme.a_bits is not None:
        raise ConfigError("a_bits", "the GPTQ format is weight-only", "pass --a-bits none with --backend optimum")
    if scheme.granularity == "tensor":
        raise ConfigError("granularity", "the GPTQ format has no per-tensor scales", "use row or group:G")
    if not calibration_texts:
        raise ConfigError("n_calibration", "the calibration set is empty", "use --n-calibration 128")
    refuse_existing_output(out_dir, overwrite=overwrite, fix=OUT_EXISTS_FIX)
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPTQConfig

    tok = AutoTokenizer.from_pretrained(model_path)
    gran = scheme.gran
    qcfg = GPTQConfig(bits=scheme.w_bits, dataset=calibration_texts, tokenizer=tok,
                      group_size=gran.group_size if gran.kind == "group" else -1,
                      desc_act=cfg.act_order, damp_percent=cfg.damp, sym=True)
    model = AutoModelForCausalLM.from_pretrained(model_path, quantization_config=qcfg)
    record = {"method": "gptq", "backend": "optimum", "source_model": str(model_path), "w_bits": scheme.w_bits,
              "a_bits": None, "granularity": scheme.granularity, "calibration_samples": len(calibration_texts),
              "format": "gptq", "hf_optquant_version": metadata.version("hf_optquant")}
    with atomic_dir(out_dir, overwrite=overwrite, fix=OUT_EXISTS_FIX) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        atomic_write_json(Path(tmp) / "quantization_record.json", record)
    return Path(out_dir)
