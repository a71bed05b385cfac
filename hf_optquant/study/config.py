"""The study config: which optimizers, sizes, budgets, precisions, PTQ settings and checks."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import load_yaml
from ..data.config import DataConfig
from ..errors import ConfigError, unknown_key_error
from ..ptq.config import PTQConfig
from ..qat.config import QATConfig

__all__ = ["StudyConfig", "load_study_config", "RunSpec"]

@dataclass(kw_only=True)
class StudyConfig:
    name: str = field(default="study", metadata={"help": "Study name (used in report and Hub cards)."})
    output_dir: str = field(default="studies/study", metadata={"help": "Where runs, results and report.md go."})
    optimizers: list[str] = field(default_factory=lambda: ["adamw", "muon", "psgd", "scion", "shampoo", "soap"],
                                  metadata={"help": "Optimizers to compare."})
    sizes: list[str] = field(default_factory=lambda: ["tiny-1", "tiny-2"], metadata={"help": "Model size presets."})
    tokens_per_param: float = field(default=20.0, metadata={"help": "Token budget per parameter (paper: 20)."})
    dataset: str = field(default="ptb", metadata={"help": "Training data (ptb offline default, or a dataset)."})
    data: DataConfig | dict | None = field(default=None, metadata={
        "help": "Data options (hf_optquant.data.DataConfig): text_column or token_column, dataset_config, "
                "tokenizer_sample_chars, allow_epochs, cache_dir (default <output_dir>/data)."})
    vocab_size: int = field(default=2048, metadata={"help": "Vocabulary of the BPE trained on the data."})
    tokenizer: str | None = field(default=None, metadata={"help": "Use this tokenizer instead of training one."})
    block_size: int = field(default=128, metadata={"help": "Sequence length."})
    batch_size: int = field(default=16, metadata={"help": "Per-device batch size."})
    eval_every: int = field(default=20, metadata={"help": "Evaluate (and snapshot) every this many steps."})
    max_eval_tokens: int = field(default=32768, metadata={"help": "Validation tokens per evaluation."})
    learning_rates: dict[str, float] = field(default_factory=dict,
                                             metadata={"help": "Peak lr per optimizer (default: preset)."})
    lr_grid: dict[str, list[float]] = field(default_factory=dict,
                                            metadata={"help": "Optional lr sweep per optimizer (best by eval loss)."})
    optimizer_kwargs: dict[str, dict] = field(default_factory=dict,
                                              metadata={"help": "Preset overrides per optimizer."})
    precisions: list[str] = field(default_factory=lambda: ["full", "qat"],
                                  metadata={"help": "full and/or qat (trained from scratch with QAT)."})
    # The stages' own config classes (their schemes are hf_optquant.quant.QuantScheme): validated at load.
    qat: QATConfig = field(default_factory=QATConfig, metadata={"help": "QAT settings (paper: QuEST W4A4)."})
    ptq: list[PTQConfig] = field(default_factory=lambda: [PTQConfig()], metadata={
        "help": "PTQ settings applied at the Common-Loss checkpoint (PTQConfig keys: method, w_bits, a_bits, "
                "granularity, targets, lm_head, damp, block_size, act_order)."})
    common_loss: float | None = field(default=None, metadata={
        "help": "Common Loss; null: the lowest eval loss every optimizer reaches, per size, from snapshots."})
    tasks: list[str] = field(default_factory=list, metadata={"help": "lm-eval tasks (online or local)."})
    task_include_path: str | None = field(default=None, metadata={"help": "Directory of local lm-eval task YAMLs."})
    diagnose_batches: int = field(default=4, metadata={"help": "Batches for MMR/kurtosis/ABC."})
    diagnose_outliers: str = field(default="residual", metadata={
        "help": "Where MMR/kurtosis are measured: residual (the residual stream, the paper's), linear, both."})
    fit_form: str = field(default="reduced", metadata={"help": "Scaling-law form: reduced, precision, chinchilla."})
    seed: int = field(default=0, metadata={"help": "Seed for data order and initial weights."})
    train_overrides: dict[str, Any] = field(default_factory=dict,
                                            metadata={"help": "Extra TrainingArguments fields for every run."})
    launcher: str = field(default="python", metadata={
        "help": "python, accelerate or torchrun: how --print-commands launches each run."})
    nodes: int = field(default=1, metadata={"help": "Nodes per run (--print-commands; accelerate or torchrun)."})
    procs_per_node: int = field(default=1, metadata={"help": "Processes (GPUs) per node for each run."})
    accelerate_config: str | None = field(default=None, metadata={
        "help": "accelerate config file for launcher accelerate, e.g. trainer_configs/accelerate_fsdp2.yaml."})

    def __post_init__(self):
        from ..models import SIZE_PRESETS
        from ..optim import OPTIMIZERS

        self.data = DataConfig.from_block(self.data, dataset=self.dataset)
        self.qat = QATConfig.from_dict(self.qat)
        if not isinstance(self.ptq, list):
            raise ConfigError("ptq", f"must be a list of PTQ settings, got {self.ptq!r}",
                              "write e.g. ptq: [{method: rtn, w_bits: 4, a_bits: 4}]")
        self.ptq = [PTQConfig.from_dict(p, prefix="ptq.") for p in self.ptq]

        if not self.optimizers:
            raise ConfigError("optimizers", "is empty", "list at least one of " + ", ".join(OPTIMIZERS))
        for o in self.optimizers:
            if o not in OPTIMIZERS:
                raise ConfigError("optimizers", f"unknown optimizer {o!r}", f"use {', '.join(OPTIMIZERS)}")
        for s in self.sizes:
            if s not in SIZE_PRESETS:
                raise ConfigError("sizes", f"unknown size {s!r}", f"use {', '.join(SIZE_PRESETS)}")
        if not self.sizes:
            raise ConfigError("sizes", "is empty", "list at least one size preset")
        for p in self.precisions:
            if p not in ("full", "qat"):
                raise ConfigError("precisions", f"unknown precision {p!r}", "use full and/or qat")
        if "full" not in self.precisions:
            raise ConfigError("precisions", "the study needs full-precision runs", "include full")
        if not self.tokens_per_param > 0:
            raise ConfigError("tokens_per_param", f"must be positive, got {self.tokens_per_param}", "use e.g. 20")
        for k in list(self.learning_rates) + list(self.lr_grid) + list(self.optimizer_kwargs):
            if k not in OPTIMIZERS:
                raise ConfigError("learning_rates", f"unknown optimizer {k!r}", f"use {', '.join(OPTIMIZERS)}")
        if self.diagnose_outliers not in ("residual", "linear", "both"):
            raise ConfigError("diagnose_outliers", f"unknown site {self.diagnose_outliers!r}",
                              "use residual (the paper's), linear or both")
        if self.fit_form not in ("reduced", "precision", "chinchilla"):
            raise ConfigError("fit_form", f"unknown form {self.fit_form!r}", "use reduced, precision or chinchilla")
        from .launch import LAUNCHERS

        if self.launcher not in LAUNCHERS:
            raise ConfigError("launcher", f"unknown launcher {self.launcher!r}", f"use {', '.join(LAUNCHERS)}")
        for name in ("nodes", "procs_per_node"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                raise ConfigError(name, f"must be a whole number >= 1, got {v!r}", f"use e.g. {name}: 1")
        if self.launcher == "python" and (self.nodes > 1 or self.procs_per_node > 1):
            raise ConfigError("launcher", "python starts one process", "set launcher: torchrun or accelerate "
                              "for nodes / procs_per_node > 1")
        if self.accelerate_config is not None and self.launcher != "accelerate":
            raise ConfigError("accelerate_config", f"is only used with launcher accelerate, not {self.launcher}",
                              "set launcher: accelerate, or drop accelerate_config")
        if self.eval_every <= 0 or self.batch_size <= 0 or self.block_size <= 1:
            raise ConfigError("eval_every", "eval_every, batch_size and block_size must be positive",
                              "use e.g. eval_every: 20, batch_size: 16, block_size: 128")
        self.learning_rates = {k: _lr(v, f"learning_rates.{k}") for k, v in self.learning_rates.items()}
        for k, grid in self.lr_grid.items():
            if not isinstance(grid, list) or not grid:
                raise ConfigError(f"lr_grid.{k}", f"must be a non-empty list of learning rates, got {grid!r}",
                                  f"write e.g. lr_grid: {{{k}: [1e-3, 3e-3]}}")
            self.lr_grid[k] = [_lr(v, f"lr_grid.{k}") for v in grid]
        for name in ("diagnose_batches", "max_eval_tokens", "vocab_size", "eval_every", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(name, f"must be a positive integer, got {v!r}", f"use e.g. {name}: "
                                  f"{_DEFAULTS[name]}")
        if not isinstance(self.train_overrides, dict):
            raise ConfigError("train_overrides", f"must be a mapping, got {self.train_overrides!r}",
                              "write e.g. train_overrides: {use_cpu: true}")
        if not self.ptq:
            raise ConfigError("ptq", "is empty: the study quantizes at the Common Loss", "list at least one setting")
        tags = [p.tag for p in self.ptq]
        if len(set(tags)) < len(tags):
            raise ConfigError("ptq", f"two settings share the name {max(tags, key=tags.count)!r} (method, bits "
                              "and granularity)", "give each PTQ setting its own method, bits or granularity")
        from .validate import validate_study

        validate_study(self)  # every stage's own config class, built now: nothing is written before it passes


_DEFAULTS = {"diagnose_batches": 4, "max_eval_tokens": 32768, "vocab_size": 2048, "eval_every": 20,
             "batch_size": 16}


def _lr(value: Any, name: str) -> float:
    from ..trainer.validate import MAX_LEARNING_RATE

    try:
        lr = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        lr = float("nan")
    if not (0 < lr <= MAX_LEARNING_RATE):  # NaN fails too
        raise ConfigError(name, f"must be a learning rate in (0, {MAX_LEARNING_RATE:g}], got {value!r}",
                          "write a number, e.g. 3e-3")
    return lr


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    optimizer: str
    size: str
    precision: str
    lr: float | None

    @property
    def run_id(self) -> str:
        lr = "" if self.lr is None else f"-lr{self.lr:g}"
        return f"{self.optimizer}-{self.size}-{self.precision}{lr}"


def _build(cls, data: dict, where: str):
    names = {f.name: f for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            raise unknown_key_error(k, names, where=where)
    return cls(**data)


def load_study_config(path: str | Path, overrides: dict | None = None) -> StudyConfig:
    data = dict(load_yaml(path))
    data.update(overrides or {})
    if "qat" in data:
        if not isinstance(data["qat"], dict):
            raise ConfigError("qat", f"must be a mapping, got {data['qat']!r}",
                              "write e.g. qat: {quantizer: quest, w_bits: 4, a_bits: 4}")
        data["qat"] = QATConfig.from_dict(data["qat"])
    if "ptq" in data:
        items = data["ptq"] if isinstance(data["ptq"], list) else [data["ptq"]]
        if not all(isinstance(p, dict) for p in items):
            raise ConfigError("ptq", f"must be a list of mappings, got {data['ptq']!r}",
                              "write e.g. ptq: [{method: rtn, w_bits: 4, a_bits: 4}]")
        data["ptq"] = [PTQConfig.from_dict(dict(p), prefix="ptq.") for p in items]
    return _build(StudyConfig, data, str(path))
