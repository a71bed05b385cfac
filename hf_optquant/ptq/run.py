"""Model dir / Hub id -> quantized checkpoint dir (what ``hf-optquant ptq`` runs)."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

from ..data.blocks import calibration_blocks
from ..errors import ConfigError
from ..io import OUT_EXISTS_FIX, refuse_existing_output
from ..models.loading import load_causal_lm
from .apply import quantize_model
from .config import PTQConfig
from .export import save_compressed_checkpoint

__all__ = ["run_ptq"]


def _source_name(source: str) -> str:
    """A local calibration file or dir by its name only (not where it lies); ptb and Hub names as given."""
    return Path(source).name if source != "ptb" and Path(source).exists() else source


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
    calib = calibration_blocks(tok, calibration, n_calibration, seq_len, seed) if cfg.method == "gptq" else None
    _, qweights = quantize_model(model, cfg, calibration=calib)
    record = {"method": cfg.method, "source_model": str(model_path), "ptq_config": cfg.to_dict(),
              # The calibration source's name and size only: never its text.
              "calibration": _source_name(calibration) if calib is not None else None,
              "calibration_samples": int(calib.shape[0]) if calib is not None else 0,
              "calibration_seq_len": seq_len if calib is not None else None,
              "calibration_seed": seed if calib is not None else None,
              "hf_optquant_version": metadata.version("hf_optquant")}
    return save_compressed_checkpoint(model, out_dir, qweights=qweights, scheme=cfg.scheme, tokenizer=tok,
                                      record=record, overwrite=overwrite)
