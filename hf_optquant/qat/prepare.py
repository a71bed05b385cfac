"""``prepare_qat``: swap a model's targeted linears for fake-quant ones (in place, validated first)."""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..models.anatomy import block_linears, in_out_features, is_linear_like
from ..quant.scheme import matches_target
from .config import AUTO_TARGET, QATConfig
from .layer import QATLinear

__all__ = ["prepare_qat", "find_targets", "qat_modules", "set_qat_enabled", "strip_qat"]


def _linear_of(module: nn.Module) -> tuple[str, nn.Module] | None:
    """The linear layer (nn.Linear or Conv1D) a matched module stands for: itself, or a peft LoRA
    layer's frozen ``base_layer``."""
    if is_linear_like(module):
        return "", module
    base = getattr(module, "base_layer", None)
    if is_linear_like(base):
        return ".base_layer", base
    return None


def _auto_ids(model: nn.Module) -> set[int]:
    """The paper's layer set on any architecture: every linear in the decoder blocks and the LM head."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model  # peft
    return {id(m) for m in block_linears(base, lm_head=True).values()}


def find_targets(model: nn.Module, cfg: QATConfig) -> dict[str, nn.Module]:
    """``{module name: linear layer}`` to quantize; every check happens here, before anything changes.

    ``auto`` stands for every linear (nn.Linear or Conv1D) in the decoder blocks plus the LM head
    (``hf_optquant.models.anatomy.block_linears``). peft: a matched LoRA layer (``...q_proj``)
    stands for its ``base_layer``; the adapter matrices ``lora_A``/``lora_B`` are never matched
    (they train in full precision).
    """
    if any(isinstance(m, QATLinear) for m in model.modules()):
        raise ConfigError("model", "is already prepared for QAT", "call prepare_qat once per model")
    targets = cfg.scheme.targets
    auto = _auto_ids(model) if AUTO_TARGET in targets else set()
    found: dict[str, nn.Module] = {}
    hits = {t: 0 for t in targets}
    for name, module in model.named_modules():
        if isinstance(module, QATLinear) or ".lora_" in f".{name}":
            continue
        got = _linear_of(module)
        if got is None:
            continue
        suffix, lin = got
        by_name = [t for t in targets if t != AUTO_TARGET and matches_target(t, name)]
        by_auto = id(lin) in auto and not suffix  # a LoRA wrapper's base_layer is visited on its own
        if not by_name and not by_auto:
            continue
        found[name + suffix] = lin
        for t in by_name:
            hits[t] += 1
        if by_auto:
            hits[AUTO_TARGET] += 1
    for t, n in hits.items():
        if n == 0:
            what = ("finds no linear layer in the model's decoder blocks" if t == AUTO_TARGET
                    else "matches no linear layer (nn.Linear or Conv1D) of the model")
            raise ConfigError("qat.targets", f"pattern {t!r} {what}",
                              "remove it, or use names from model.named_modules() (e.g. q_proj, mlp.down_proj, re:.*proj)")
    gran = cfg.scheme.gran
    for name, lin in found.items():
        d = in_out_features(lin)[0]
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


def prepare_qat(model: nn.Module, cfg: QATConfig | dict) -> nn.Module:
    """Replace every targeted ``nn.Linear``/``Conv1D`` with a :class:`QATLinear` on the same Parameters.

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
    """Put the plain layers back (``nn.Linear`` or ``Conv1D``, same Parameters), in place."""
    for name, m in qat_modules(model).items():
        _set_child(model, name, m.to_linear())
    if hasattr(model, "hf_optquant_qat_config"):
        del model.hf_optquant_qat_config
    return model
