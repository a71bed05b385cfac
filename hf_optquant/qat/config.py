"""``QATConfig``: which quantizer, how many bits, which layers (the YAML ``qat:`` block)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..quant.scheme import AUTO_TARGET, QuantScheme, check_keys, flat_scheme_keys, matches_target
from .hadamard import is_power_of_two

__all__ = ["QATConfig", "qat_record", "read_qat_record", "DEFAULT_TARGETS", "AUTO_TARGET", "LLAMA_TARGETS",
           "QUANTIZERS"]

QUANTIZERS = ("quest", "rtn")
# The paper's QAT layers: q, k, v, o, both MLP matrices (gated MLPs: gate and up) and the LM head.
# ``auto`` finds them on any architecture (OPT, GPT-2, GPT-NeoX, Phi, ...): every linear in the
# decoder blocks plus the LM head; on Llama/OLMo-style models it is exactly the list below.
DEFAULT_TARGETS = (AUTO_TARGET,)
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")


@flat_scheme_keys(prefix="qat.")
@dataclass(kw_only=True)
class QATConfig:
    quantizer: str = field(default="quest", metadata={
        "help": "quest (Hadamard + Gaussian-optimal RMS clipping + trust-masked STE, the paper's) or rtn "
                "(symmetric absmax on the shared grid, plain STE)."})
    scheme: QuantScheme = field(default_factory=lambda: QuantScheme(targets=DEFAULT_TARGETS), metadata={
        "help": "Weights, activations and targets (hf_optquant.quant.QuantScheme); written flat in YAML: "
                "w_bits, a_bits (2-8 or none), granularity, targets (default [auto]: every linear in the "
                "decoder blocks plus the LM head, any architecture)."})
    hadamard_block: int = field(default=128, metadata={
        "help": "quest: size of the block-diagonal Hadamard along the input dim (power of two dividing in_features)."})
    enabled: bool = field(default=True, metadata={"help": "Fake quantization on (false: the layers run in float)."})

    def __post_init__(self):
        if self.quantizer not in QUANTIZERS:
            raise ConfigError("qat.quantizer", f"unknown quantizer {self.quantizer!r}", f"use one of {', '.join(QUANTIZERS)}")
        if isinstance(self.hadamard_block, bool) or not is_power_of_two(self.hadamard_block):
            raise ConfigError("qat.hadamard_block", f"must be a power of two, got {self.hadamard_block!r}",
                              "use 128 (the paper's), or 32/64 for small layers")
        if not self.scheme.targets:
            raise ConfigError("qat.targets", "must be a non-empty list of module name patterns",
                              "e.g. [auto] or [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head]")
        if not isinstance(self.enabled, bool):
            raise ConfigError("qat.enabled", f"must be true or false, got {self.enabled!r}", "write true or false")

    def matches(self, name: str) -> bool:
        """Does module ``name`` match one of the name patterns? (``auto`` needs the model: see find_targets.)"""
        return any(matches_target(t, name) for t in self.scheme.targets if t != AUTO_TARGET)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | QATConfig) -> QATConfig:
        if isinstance(d, QATConfig):
            return d
        if not isinstance(d, dict):
            raise ConfigError("qat", f"must be a mapping, got {type(d).__name__}",
                              "write e.g. qat: {quantizer: quest, w_bits: 4, a_bits: 4, granularity: row}")
        check_keys(cls, d, "qat.")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        s = self.scheme.user_dict()
        return {"quantizer": self.quantizer, "w_bits": s["w_bits"], "a_bits": s["a_bits"],
                "granularity": s["granularity"], "hadamard_block": self.hadamard_block, "targets": s["targets"],
                "enabled": self.enabled}


def qat_record(cfg: QATConfig | None) -> dict[str, Any] | None:
    """``run.json``'s ``qat`` entry (the one writer): the QAT config by its flat YAML keys, null in full precision."""
    return cfg.to_dict() if cfg is not None else None


def read_qat_record(record: dict[str, Any], where: str = "run.json") -> QATConfig | None:
    """The QAT config a run was trained with, from its ``run.json`` (the one reader; also reads the study's
    ``qat.json``, which keeps the same entry); ``None`` for a full-precision run."""
    qat = record.get("qat") if isinstance(record, dict) else None
    if not qat:
        return None
    try:
        return QATConfig.from_dict(qat)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.field}", exc.problem, "the record was not written by this version of "
                          f"hf_optquant or was edited; {exc.fix}") from None
