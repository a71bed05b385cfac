"""``OptQuantTrainingArguments``: ``TrainingArguments`` plus optimizer, WSD schedule, Common Loss and QAT."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from ..errors import ConfigError
from .ignored import check_ignored_fields
from .schedule import WSDSchedule

__all__ = ["OptQuantTrainingArguments"]


def _as_dict(value: Any, name: str) -> dict | None:
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            out = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(name, f"cannot parse {value!r} as JSON",
                              f"""write JSON with double quotes, e.g. --{name} '{{"key": 1}}'""") from None
        if not isinstance(out, dict):
            raise ConfigError(name, "must be a mapping", f'write it as a mapping, e.g. {name}: {{"key": 1}}')
        return out
    raise ConfigError(name, f"must be a mapping, got {type(value).__name__}", "write it as a YAML mapping")


@dataclass
class OptQuantTrainingArguments(TrainingArguments):
    optimizer: str = field(
        default="adamw",
        metadata={"help": "Optimizer under study for the hidden matrices: adamw, muon, psgd, scion, shampoo or soap."},
    )
    optimizer_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Overrides of the optimizer preset's hyperparameters: a YAML mapping, or JSON on the "
                  "command line, e.g. --optimizer_kwargs '{\"momentum\": 0.9}'."},
    )
    # None means "the optimizer preset's learning rate" (the HF default 5e-5 suits no optimizer here).
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "Peak learning rate for the hidden matrices; default: the optimizer preset's."},
    )
    schedule: str = field(
        default="wsd",
        metadata={"help": "'wsd': the paper's warmup-stable-decay; 'hf': use lr_scheduler_type as in plain Trainer."},
    )
    wsd_warmup_fraction: float = field(default=0.05, metadata={"help": "WSD: fraction of steps of linear warm-up."})
    wsd_decay_fraction: float = field(default=0.20, metadata={"help": "WSD: fraction of steps of linear decay to 0."})
    wsd_warmup_start_factor: float = field(
        default=0.001, metadata={"help": "WSD: the warm-up starts at this multiple of the peak learning rate."}
    )
    save_at_eval_loss: float | None = field(
        default=None,
        metadata={
            "help": "Common Loss: save a full model to <output_dir>/common_loss the first time eval loss falls "
            "below this value, recording step and tokens (needs evaluation during training)."
        },
    )
    snapshot_at_eval: bool = field(
        default=False,
        metadata={"help": "Save a model-only snapshot at every evaluation (lets a study pick its Common-Loss "
                  "checkpoint after training)."},
    )
    qat: dict | str | None = field(
        default=None,
        metadata={"help": 'Quantization-aware training block: a YAML mapping, or JSON on the command line, e.g. '
                  '--qat \'{"quantizer": "quest", "w_bits": 4, "a_bits": 4, "granularity": "row"}\'.'},
    )

    def __post_init__(self):
        from ..optim import OPTIMIZERS, optimizer_hparams

        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer", f"unknown optimizer {self.optimizer!r}", f"use one of {', '.join(OPTIMIZERS)}")
        self.optimizer_kwargs = _as_dict(self.optimizer_kwargs, "optimizer_kwargs") or {}
        self.qat = _as_dict(self.qat, "qat")
        if "lr" in self.optimizer_kwargs:
            raise ConfigError("optimizer_kwargs", "'lr' belongs in learning_rate", "set learning_rate instead")
        # Validates every key of optimizer_kwargs against the preset (unknown key -> one clear line).
        hp = optimizer_hparams(self.optimizer, **self.optimizer_kwargs)
        if self.learning_rate is None:
            self.learning_rate = float(hp["lr"])
        if not self.learning_rate > 0:
            raise ConfigError("learning_rate", f"must be positive, got {self.learning_rate}", "use e.g. 3e-3")
        if self.schedule not in ("wsd", "hf"):
            raise ConfigError("schedule", f"unknown schedule {self.schedule!r}", "use wsd or hf")
        self.wsd = WSDSchedule(
            warmup_fraction=self.wsd_warmup_fraction,
            decay_fraction=self.wsd_decay_fraction,
            warmup_start_factor=self.wsd_warmup_start_factor,
        )
        if self.save_at_eval_loss is not None and not self.save_at_eval_loss > 0:
            raise ConfigError("save_at_eval_loss", "must be a positive loss value", "use e.g. 4.5, or leave it unset")
        if self.qat is not None:
            from ..qat import QATConfig

            QATConfig.from_dict(self.qat)  # validate now, before anything is written
        check_ignored_fields(self)  # before TrainingArguments.__post_init__ rewrites some of them
        from .parallel import check_deepspeed, check_parallelism
        from .validate import check_steps_before_defaults, validate_training_arguments

        check_deepspeed(self)
        check_steps_before_defaults(self)  # transformers turns eval_steps: 0 into logging_steps
        super().__post_init__()
        validate_training_arguments(self)  # the ranges transformers would only trip over mid-run
        check_parallelism(self)  # FSDP on CPU, FSDP1, DeepSpeed + matrix optimizer: refused, not downgraded
        if self.save_at_eval_loss is not None and self.eval_strategy == "no":
            raise ConfigError("eval_strategy", "save_at_eval_loss needs evaluation during training",
                              "set eval_strategy: steps and eval_steps")
