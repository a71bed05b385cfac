"""Model dir / Hub id -> quantized checkpoint dir (what ``hf-optquant ptq`` runs)."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

import torch

from ..errors import ConfigError
from .apply import quantize_model
from .config import PTQConfig
from .export import save_compressed_checkpoint

__all__ = ["load_causal_lm", "calibration_ids", "run_ptq"]


def load_causal_lm(path: str):
    """``(model, tokenizer)`` from a local dir or Hub id, with one clear error otherwise."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError("model", f"{path!r} is not a loadable causal LM ({str(exc).splitlines()[0][:160]})",
                          "give a directory written by save_pretrained (config.json + weights) or a Hub id") from None
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError):
        tok = None
    return model.eval(), tok


def calibration_ids(tokenizer, source: str = "ptb", n: int = 128, seq_len: int = 128, seed: int = 0) -> torch.Tensor:
    """``n`` random windows of ``seq_len`` tokens from the PTB train split or a text file."""
    from ..data import pack_tokens
    from ..data.packing import load_text_splits

    if n <= 0:
        raise ConfigError("n_calibration", "the calibration set is empty", "use --n-calibration 128")
    if tokenizer is None:
        raise ConfigError("tokenizer", "the model dir has no tokenizer for calibration", "save the tokenizer with it")
    if source != "ptb" and not Path(source).is_file():
        raise ConfigError("calibration", f"{source} does not exist", "use ptb or a text file")
    texts = load_text_splits("ptb")["train"] if source == "ptb" else \
        [t for t in Path(source).read_text().splitlines() if t.strip()]
    blocks = pack_tokens(texts, tokenizer, seq_len, max_tokens=max(n * seq_len * 4, seq_len))
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(blocks.shape[0], generator=g)[:n]
    return blocks[idx]


def run_ptq(model_path: str, out_dir: str, cfg: PTQConfig, *, calibration: str = "ptb", n_calibration: int = 128,
            seq_len: int = 128, overwrite: bool = False) -> Path:
    if Path(out_dir).exists() and not overwrite:
        raise ConfigError("out", f"{out_dir} already exists", "choose a new --out or pass --overwrite")
    if cfg.method == "gptq" and n_calibration <= 0:
        raise ConfigError("n_calibration", "the calibration set is empty", "use --n-calibration 128")
    model, tok = load_causal_lm(model_path)
    calib = calibration_ids(tok, calibration, n_calibration, seq_len) if cfg.method == "gptq" else None
    qmodel, qweights = quantize_model(model, cfg, calibration=calib)
    record = {"method": cfg.method, "source_model": str(model_path), "ptq_config": cfg.to_dict(),
              "calibration": calibration if calib is not None else None,
              "calibration_samples": int(calib.shape[0]) if calib is not None else 0,
              "calibration_seq_len": seq_len if calib is not None else None,
              "hf_optquant_version": metadata.version("hf_optquant")}
    return save_compressed_checkpoint(model, out_dir, qweights=qweights, w_bits=cfg.w_bits, a_bits=cfg.a_bits,
                                      granularity=cfg.granularity, tokenizer=tok, record=record, overwrite=overwrite)
