"""``DiagnoseConfig``: what ``diagnose`` measures and on which batches (the PTQ setting it diagnoses is a
:class:`~hf_optquant.ptq.PTQConfig`)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ..config import add_field_flags, flag_values
from ..errors import ConfigError
from .decomposition import NORMS
from .outlier_stats import OUTLIER_SITES

__all__ = ["DiagnoseConfig", "MODULE_SETS", "add_diagnose_arguments", "diagnose_config"]

MODULE_SETS = ("block", "default", "linear", "sublayer", "all")  # default = block


def _positive(value, name: str, default: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(name, f"must be a positive integer, got {value!r}", f"use --{name.replace('_', '-')} {default}")


@dataclass(kw_only=True)
class DiagnoseConfig:
    n_batches: int = field(default=4, metadata={"help": "Evaluation batches."})
    batch_size: int = field(default=4, metadata={"help": "Sequences per batch."})
    seq_len: int = field(default=128, metadata={"help": "Tokens per sequence (checked against the model's limit)."})
    modules: str = field(default="block", metadata={
        "help": "block (each decoder layer, norm, head), linear, sublayer (attention, MLP, norms), all, or "
                "comma-separated name patterns (hf_optquant.quant.matches_target)."})
    norm: str = field(default="tensor", metadata={"help": "tensor (norms over the batch) or token (per-token ratios)."})
    outliers: str = field(default="residual", metadata={
        "help": "Where MMR and kurtosis are measured: residual (the residual stream, each decoder block's input and "
                "the last block's output, as the paper's authors measure it), linear (every linear layer's input), "
                "both, or none; the model-level value is the median over layers."})
    dataset: str = field(default="ptb", metadata={
        "help": "Text of the evaluation batches and of GPTQ's calibration (its train split): ptb (offline), a local "
                "file/dir or a Hub dataset, streamed."})
    split: str = field(default="validation", metadata={"help": "Split of the evaluation batches."})

    def __post_init__(self):
        _positive(self.n_batches, "n_batches", 4)
        _positive(self.batch_size, "batch_size", 4)
        if self.norm not in NORMS:
            raise ConfigError("norm", f"unknown norm reduction {self.norm!r}", f"use one of {', '.join(NORMS)}")
        if self.outliers not in OUTLIER_SITES:
            raise ConfigError("outliers", f"unknown site {self.outliers!r} for the outlier metrics",
                              f"use one of {', '.join(OUTLIER_SITES)} (residual is the paper's)")
        if self.modules not in MODULE_SETS and not any(w.strip() for w in str(self.modules).split(",")):
            raise ConfigError("modules", f"{self.modules!r} names no module", f"use one of {', '.join(MODULE_SETS)} "
                              "or comma-separated name suffixes such as q_proj,mlp")


def add_diagnose_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per field (``--n-batches``, ``--modules``, ...), with the field's help and default."""
    add_field_flags(p, DiagnoseConfig)


def diagnose_config(args: argparse.Namespace) -> DiagnoseConfig:
    return DiagnoseConfig(**flag_values(args, DiagnoseConfig))
