"""PTQ settings."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..quant import Granularity, parse_granularity, validate_bits

__all__ = ["PTQConfig"]


@dataclass(kw_only=True)
class PTQConfig:
    method: str = field(default="rtn", metadata={"help": "rtn (round-to-nearest, the paper's) or gptq."})
    w_bits: int = field(default=4, metadata={"help": "Weight bits, 2-8."})
    a_bits: int | None = field(default=4, metadata={"help": "Activation bits, dynamic per token: 4, 8 or None."})
    granularity: str = field(default="row", metadata={"help": "Weight scales: row, group:G or tensor."})
    targets: tuple[str, ...] = field(default=(), metadata={
        "help": "Linear layers to quantize, by name suffix (e.g. q_proj); empty: every linear in the decoder blocks."})
    lm_head: bool = field(default=False, metadata={"help": "Also quantize the LM head (the checkpoint then unties it)."})
    damp: float = field(default=0.01, metadata={"help": "GPTQ: damping, a fraction of mean diag(H)."})
    block_size: int = field(default=128, metadata={"help": "GPTQ: columns per error-feedback block."})
    act_order: bool = field(default=True, metadata={"help": (
        "GPTQ: quantize columns by decreasing diag(H) (on by default, as llm-compressor's static ordering: "
        "same checkpoint format, ~37% lower layer error in benchmarks/RESULTS.md).")})

    def __post_init__(self):
        if self.method not in ("rtn", "gptq"):
            raise ConfigError("method", f"unknown method {self.method!r}", "use rtn or gptq")
        if self.w_bits is None:
            raise ConfigError("w_bits", "weights must be quantized", "use an integer between 2 and 8")
        validate_bits(self.w_bits, "w_bits")
        validate_bits(self.a_bits, "a_bits", allowed=(4, 8))
        self.granularity = str(parse_granularity(self.granularity))
        self.targets = tuple(self.targets)
        if not all(isinstance(t, str) and t for t in self.targets):
            raise ConfigError("targets", f"must be non-empty layer-name suffixes, got {self.targets!r}",
                              "e.g. ('q_proj', 'k_proj'), or leave empty for every block linear")
        if not 0 <= self.damp < 1:
            raise ConfigError("damp", f"must be in [0, 1), got {self.damp}", "use 0.01")
        if isinstance(self.block_size, bool) or not isinstance(self.block_size, int) or self.block_size <= 0:
            raise ConfigError("block_size", f"must be a positive integer, got {self.block_size!r}", "use 128")

    @property
    def gran(self) -> Granularity:
        return parse_granularity(self.granularity)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["targets"] = list(self.targets)
        return d
