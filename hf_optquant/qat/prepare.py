"""``prepare_qat``: swap a model's targeted linears for fake-quant ones (in place, validated first)."""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .config import QATConfig, pattern_matches
from .layer import QATLinear

__all__ = ["prepare_qat", "find_targets", "qat_modules", "set_qat_enabled", "strip_qat"]


def _linear_of(module: nn.Module) -> tuple[str, nn.Linear] | None:
    """The Linear a matched module stands for: itself, or a peft LoRA layer's frozen ``base_layer``."""
    if isinstance(module, nn.Linear):
        return "", module
    base = getattr(module, "base_layer", None)
    if isinstance(base, nn.Linear):
        return ".base_layer", base
    return None


def find_targets(model: nn.Module, cfg: QATConfig) -> dict[str, nn.Linear]:
    """``{module name: Linear}`` to quantize; every check happens here, before anything changes.

    peft: a matched LoRA layer (``...q_proj``) stands for its ``base_layer``; the adapter
    matrices ``lora_A``/``lora_B`` are never matched (they train in full precision).
    """
    if any(isinstance(m, QATLinear) for m in model.modules()):
        raise ConfigError("model", "is already prepared for QAT", "call prepare_qat once per model")
    found: dict[str, nn.Linear] = {}
    hits = {t: 0 for t in cfg.targets}
    for name, module in model.named_modules():
        if isinstance(module, QATLinear) or ".lora_" in f".{name}" or not cfg.matches(name):
            continue
        got = _linear_of(module)
        if got is None:
            continue
        suffix, lin = got
        found[name + suffix] = lin
        for t in cfg.targets:
            hits[t] += pattern_matches(t, name)
    for t, n in hits.items():
        if n == 0:
            raise ConfigError("qat.targets", f"pattern {t!r} matches no linear layer of the model",
                              "remove it, or use names from model.named_modules() (e.g. q_proj, mlp.down_proj, re:.*proj)")
    gran = cfg.gran
    for name, lin in found.items():
        d = lin.in_features
        if gran.kind == "group" and d % gran.group_size != 0:
            raise ConfigError("qat.granularity", f"group size {gran.group_size} does not divide in_features={d} of {name}",
                              "choose a group size that divides every targeted layer's in_features")
        if cfg.quantizer == "quest" and d % cfg.hadamard_block != 0:
            raise ConfigError("qat.hadamard_block", f"{cfg.hadamard_block} does not divide in_features={d} of {name}",
                              "choose a power of two dividing every targeted layer's in_features (e.g. 32 or 64)")
    return found


def _set_child(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def prepare_qat(model: nn.Module, cfg: "QATConfig | dict") -> nn.Module:
    """Replace every targeted ``nn.Linear`` with a :class:`QATLinear` on the same Parameters.

    Validates everything first (a bad pattern, group size or Hadamard block changes nothing),
    then swaps in place and returns ``model``. Tied embedding / LM head stay one Parameter.
    """
    cfg = QATConfig.from_dict(cfg)
    targets = find_targets(model, cfg)
    for name, lin in targets.items():
        _set_child(model, name, QATLinear.from_linear(lin, cfg))
    # Recorded on the model so convert/save code can tell how it was prepared.
    model.hf_optquant_qat_config = cfg
    return model


def qat_modules(model: nn.Module) -> dict[str, QATLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, QATLinear)}


def set_qat_enabled(model: nn.Module, enabled: bool) -> None:
    """Switch fake quantization on/off in every QAT layer (e.g. to evaluate the float model)."""
    for m in qat_modules(model).values():
        m.enabled = enabled


def strip_qat(model: nn.Module) -> nn.Module:
    """Put plain ``nn.Linear`` layers back (same Parameters), in place."""
    for name, m in qat_modules(model).items():
        _set_child(model, name, m.to_linear())
    if hasattr(model, "hf_optquant_qat_config"):
        del model.hf_optquant_qat_config
    return model
