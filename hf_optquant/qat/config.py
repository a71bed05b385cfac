"""``QATConfig``: which quantizer, how many bits, which layers (the YAML ``qat:`` block)."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, unknown_key_error
from ..quant import Granularity, parse_granularity, validate_bits
from .hadamard import is_power_of_two

__all__ = ["QATConfig", "DEFAULT_TARGETS", "AUTO_TARGET", "LLAMA_TARGETS", "QUANTIZERS", "pattern_matches"]

QUANTIZERS = ("quest", "rtn")
# The paper's QAT layers: q, k, v, o, both MLP matrices (gated MLPs: gate and up) and the LM head.
# ``auto`` finds them on any architecture (OPT, GPT-2, GPT-NeoX, Phi, ...): every linear in the
# decoder blocks plus the LM head; on Llama/OLMo-style models it is exactly the list below.
AUTO_TARGET = "auto"
DEFAULT_TARGETS = (AUTO_TARGET,)
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")


def pattern_matches(pattern: str, name: str) -> bool:
    """``re:REGEX`` must match the whole name; otherwise the name equals the pattern or ends with ``.pattern``."""
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return name == pattern or name.endswith("." + pattern)


def _bits(value: Any, name: str) -> int | None:
    if isinstance(value, str) and value.strip().lower() in ("none", "null", ""):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return validate_bits(value, name)


@dataclass(kw_only=True)
class QATConfig:
    quantizer: str = field(default="quest", metadata={
        "help": "quest (Hadamard + Gaussian-optimal RMS clipping + trust-masked STE, the paper's) or rtn "
                "(symmetric absmax on the shared grid, plain STE)."})
    w_bits: int | None = field(default=4, metadata={"help": "Weight bits, 2-8, or none."})
    a_bits: int | None = field(default=4, metadata={"help": "Activation bits (per token), 2-8, or none."})
    granularity: str = field(default="row", metadata={"help": "Weight scales: row, group:G or tensor."})
    hadamard_block: int = field(default=128, metadata={
        "help": "quest: size of the block-diagonal Hadamard along the input dim (power of two dividing in_features)."})
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS), metadata={
        "help": "auto (every linear in the decoder blocks plus the LM head, any architecture) and/or module name "
                "patterns: a name suffix (q_proj), a dotted suffix (mlp.down_proj) or 're:REGEX'."})
    enabled: bool = field(default=True, metadata={"help": "Fake quantization on (false: the layers run in float)."})

    def __post_init__(self):
        if self.quantizer not in QUANTIZERS:
            raise ConfigError("qat.quantizer", f"unknown quantizer {self.quantizer!r}", f"use one of {', '.join(QUANTIZERS)}")
        self.w_bits = _bits(self.w_bits, "qat.w_bits")
        self.a_bits = _bits(self.a_bits, "qat.a_bits")
        if self.w_bits is None and self.a_bits is None:
            raise ConfigError("qat.w_bits", "both w_bits and a_bits are none: nothing to quantize",
                              "set w_bits and/or a_bits to 2-8")
        try:
            self.granularity = str(parse_granularity(self.granularity))
        except ConfigError as exc:
            raise ConfigError("qat.granularity", exc.problem, exc.fix) from None
        if isinstance(self.hadamard_block, bool) or not is_power_of_two(self.hadamard_block):
            raise ConfigError("qat.hadamard_block", f"must be a power of two, got {self.hadamard_block!r}",
                              "use 128 (the paper's), or 32/64 for small layers")
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        if not self.targets or not all(isinstance(t, str) and t.strip() for t in self.targets):
            raise ConfigError("qat.targets", "must be a non-empty list of module name patterns",
                              "e.g. [auto] or [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head]")
        self.targets = list(self.targets)
        for t in self.targets:
            if t.startswith("re:"):
                try:
                    re.compile(t[3:])
                except re.error as exc:
                    raise ConfigError("qat.targets", f"bad regular expression {t!r} ({exc})", "fix the pattern") from None
        if not isinstance(self.enabled, bool):
            raise ConfigError("qat.enabled", f"must be true or false, got {self.enabled!r}", "write true or false")

    @property
    def gran(self) -> Granularity:
        return parse_granularity(self.granularity)

    def matches(self, name: str) -> bool:
        """Does module ``name`` match one of the name patterns? (``auto`` needs the model: see find_targets.)"""
        return any(pattern_matches(t, name) for t in self.targets if t != AUTO_TARGET)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | QATConfig) -> QATConfig:
        if isinstance(d, QATConfig):
            return d
        if not isinstance(d, dict):
            raise ConfigError("qat", f"must be a mapping, got {type(d).__name__}",
                              "write e.g. qat: {quantizer: quest, w_bits: 4, a_bits: 4, granularity: row}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in names:
                raise unknown_key_error(key, names, field=f"qat.{key}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), (list, tuple)) else v)
                for f in dataclasses.fields(self)}
