"""Model dir / Hub id -> quantized checkpoint dir (what ``hf-optquant ptq`` runs)."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

import torch

from ..errors import ConfigError, EnvironmentFailure
from .apply import quantize_model
from .config import PTQConfig
from .export import save_compressed_checkpoint

__all__ = ["load_causal_lm", "calibration_ids", "run_ptq", "is_quest_checkpoint"]


def is_quest_checkpoint(path: Path) -> bool:
    """A local QuEST checkpoint (``convert_qat``, rotated form): it runs through ``load_quest``."""
    import json

    rec = path / "quantization_record.json"
    if not rec.is_file():
        return False
    try:
        data = json.loads(rec.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("method") == "quest-qat" and data.get("quest_form") == "rotated"


def load_causal_lm(path: str, *, field: str = "model"):
    """``(model, tokenizer or None)`` from a local dir or Hub id, with one clear error otherwise."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    if not p.exists() and (p.is_absolute() or str(path).startswith((".", "~")) or str(path).count("/") > 1):
        raise ConfigError(field, f"there is no directory {path}", "give an existing model directory or a Hub id "
                          "(NAMESPACE/NAME)")
    if p.exists() and not (p / "config.json").is_file():
        raise ConfigError(field, f"{path} has no config.json, so it is not a saved model",
                          "give a directory written by save_pretrained (config.json + weights) or a Hub id")
    if p.exists() and not any(p.glob("*.safetensors")) and any(p.glob(f) for f in ("*.bin", "*.pt", "*.pth", "*.ckpt")):
        raise ConfigError(field, f"{path} has pickle weights only (e.g. pytorch_model.bin); hf_optquant loads "
                          "safetensors only, since unpickling a file can run code",
                          "if you trust the file, load it yourself and save_pretrained(dir) (writes safetensors)")
    try:
        if is_quest_checkpoint(p):  # plain from_pretrained would drop the checkpoint's Hadamard rotation
            from ..qat.deploy import load_quest

            model = load_quest(p, use_safetensors=True)
        else:
            # safetensors only: a pickle in a checkpoint is never unpickled (see above).
            model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    except Exception as exc:
        if type(exc).__name__ == "SafetensorError" or "safetensors" in str(exc).lower() and "header" in str(exc):
            weights = sorted(p.glob("*.safetensors")) if p.exists() else []
            raise EnvironmentFailure(weights[0] if weights else path, f"damaged safetensors file ({str(exc)[:160]})",
                                     "re-create or re-download the checkpoint") from None
        if not isinstance(exc, (OSError, ValueError, KeyError)):
            raise
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        where = "a causal LM directory" if p.exists() else "a Hub repo id reachable from here (offline: download it first)"
        raise ConfigError(field, f"{path!r} cannot be loaded as a causal LM ({first})",
                          f"give {where}, e.g. one written by `hf-optquant train`") from None
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError):
        tok = None
    return model.eval(), tok


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

    if Path(out_dir).exists() and not overwrite:
        raise ConfigError("out", f"{out_dir} already exists", "choose a new --out or pass --overwrite")
    check_sequence_length(model_path, seq_len, "seq_len")
    from ..io import check_output_path

    check_output_path(out_dir)
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
