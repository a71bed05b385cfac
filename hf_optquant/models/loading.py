"""Load a saved causal LM (local dir or Hub id) for PTQ, evaluation, diagnosis and the study: safetensors only,
QuEST checkpoints through their own loader, and one clear error for every way a path is not a model."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, EnvironmentFailure

__all__ = ["load_causal_lm", "is_quest_checkpoint"]


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
