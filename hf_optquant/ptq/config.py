"""PTQ settings: a :class:`~hf_optquant.quant.QuantScheme` and the PTQ method's own knobs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..quant.scheme import AUTO_TARGET as AUTO
from ..quant.scheme import QuantScheme, check_keys, flat_scheme_keys

__all__ = ["PTQConfig"]


@flat_scheme_keys()
@dataclass(kw_only=True)
class PTQConfig:
    method: str = field(default="rtn", metadata={"help": "rtn (round-to-nearest, the paper's) or gptq."})
    scheme: QuantScheme = field(default_factory=QuantScheme, metadata={
        "help": "Weights, activations and targets (hf_optquant.quant.QuantScheme); written flat in YAML and on "
                "the command line: w_bits, a_bits, granularity, targets (empty: every linear in the decoder "
                "blocks)."})
    lm_head: bool = field(default=False, metadata={"help": "Also quantize the LM head (the checkpoint then unties it)."})
    damp: float = field(default=0.01, metadata={"help": "GPTQ: damping, a fraction of mean diag(H)."})
    block_size: int = field(default=128, metadata={"help": "GPTQ: columns per error-feedback block."})
    act_order: bool = field(default=True, metadata={"help": (
        "GPTQ: quantize columns by decreasing diag(H) (on by default, as llm-compressor's static ordering: "
        "same checkpoint format, ~37% lower layer error in benchmarks/RESULTS.md).")})

    def __post_init__(self):
        if self.method not in ("rtn", "gptq"):
            raise ConfigError("method", f"unknown method {self.method!r}", "use rtn or gptq")
        if AUTO in self.scheme.targets:
            raise ConfigError("targets", "auto is QAT's layer set", "leave targets empty for every block linear "
                              "and pass lm_head for the LM head")
        self.scheme.check_exportable()  # PTQ always writes a checkpoint: its rules apply from the start
        if not 0 <= self.damp < 1:
            raise ConfigError("damp", f"must be in [0, 1), got {self.damp}", "use 0.01")
        if isinstance(self.block_size, bool) or not isinstance(self.block_size, int) or self.block_size <= 0:
            raise ConfigError("block_size", f"must be a positive integer, got {self.block_size!r}", "use 128")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | PTQConfig, prefix: str = "") -> PTQConfig:
        """From the flat keys of a YAML block (``prefix`` names it in errors, e.g. ``ptq.``)."""
        if isinstance(d, PTQConfig):
            return d
        if not isinstance(d, dict):
            raise ConfigError(prefix.rstrip(".") or "ptq", f"must be a mapping, got {d!r}",
                              "write e.g. {method: rtn, w_bits: 4, a_bits: 4, granularity: row}")
        check_keys(cls, d, prefix)
        try:
            return cls(**d)
        except ConfigError as exc:
            raise ConfigError(f"{prefix}{exc.field}", exc.problem, exc.fix) from None

    @property
    def tag(self) -> str:
        """Short name of the setting (``rtn-w4a4-row``): study record keys and results-table run ids."""
        s = self.scheme
        a = f"a{s.a_bits}" if s.a_bits else "a16"
        return f"{self.method}-w{s.w_bits}{a}-{s.granularity.replace(':', '')}"

    def to_dict(self) -> dict:
        return {"method": self.method, **self.scheme.user_dict(), "lm_head": self.lm_head, "damp": self.damp,
                "block_size": self.block_size, "act_order": self.act_order}
