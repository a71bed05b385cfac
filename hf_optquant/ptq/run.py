"""Model dir / Hub id -> quantized checkpoint dir (what ``hf-optquant ptq`` runs)."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

import torch

from ..errors import ConfigError
from ..io import OUT_EXISTS_FIX, refuse_existing_output
from ..models.loading import load_causal_lm
from .apply import quantize_model
from .config import PTQConfig
from .export import save_compressed_checkpoint

__all__ = ["calibration_ids", "run_ptq"]


def calibration_ids(tokenizer, source: str = "ptb", n: int = 128, seq_len: int = 128, seed: int = 0) -> torch.Tensor:
    """``n`` random windows of ``seq_len`` tokens from the PTB train split or a text file (one text per line)."""
    from ..data import pack_tokens
    from ..data.packing import load_text_splits

    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ConfigError("n_calibration", f"the calibration set is empty (n={n})", "use --n-calibration 128")
    if tokenizer is None:
        raise ConfigError("tokenizer", "the model has no tokenizer to encode calibration text",
                          "save the tokenizer with the model (tokenizer.save_pretrained(dir))")
    if source == "ptb":
        texts = load_text_splits("ptb")["train"]
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError("calibration", f"{source} is neither 'ptb' nor a file", "use ptb or a text file")
        texts = [t for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
        if not texts:
            raise ConfigError("calibration", f"{source} has no text", "give a file with one text per line")
    try:
        blocks = pack_tokens(texts, tokenizer, seq_len, max_tokens=n * seq_len * 4)
    except ConfigError:
        raise ConfigError("calibration", f"{source} has fewer than {seq_len} tokens",
                          "give more calibration text or a smaller --seq-len") from None
    g = torch.Generator().manual_seed(seed)
    return blocks[torch.randperm(blocks.shape[0], generator=g)[:n]]


def run_ptq(model_path: str, out_dir: str, cfg: PTQConfig, *, calibration: str = "ptb", n_calibration: int = 128,
            seq_len: int = 128, overwrite: bool = False, seed: int = 0) -> Path:
    """Load, quantize (RTN or GPTQ) and save a compressed-tensors checkpoint with its record."""
    from ..models.limits import check_sequence_length

    refuse_existing_output(out_dir, overwrite=overwrite, fix=OUT_EXISTS_FIX)
    check_sequence_length(model_path, seq_len, "seq_len")
    if cfg.method == "gptq" and (isinstance(n_calibration, bool) or n_calibration <= 0):
        raise ConfigError("n_calibration", f"the calibration set is empty (n={n_calibration})",
                          "use --n-calibration 128")
    model, tok = load_causal_lm(model_path)
    calib = calibration_ids(tok, calibration, n_calibration, seq_len, seed) if cfg.method == "gptq" else None
    _, qweights = quantize_model(model, cfg, calibration=calib)
    record = {"method": cfg.method, "source_model": str(model_path), "ptq_config": cfg.to_dict(),
              # The calibration source's name and size only: never its text.
              "calibration": (calibration if calibration == "ptb" else Path(calibration).name) if calib is not None else None,
              "calibration_samples": int(calib.shape[0]) if calib is not None else 0,
              "calibration_seq_len": seq_len if calib is not None else None,
              "calibration_seed": seed if calib is not None else None,
              "hf_optquant_version": metadata.version("hf_optquant")}
    return save_compressed_checkpoint(model, out_dir, qweights=qweights, scheme=cfg.scheme, tokenizer=tok,
                                      record=record, overwrite=overwrite)
