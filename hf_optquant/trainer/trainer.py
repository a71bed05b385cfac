"""``OptQuantTrainer``: a ``transformers.Trainer`` that builds one of the six optimizers,
the WSD schedule, optional QAT and the Common-Loss checkpoint from ``OptQuantTrainingArguments``."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from transformers import Trainer

from ..errors import ConfigError
from ..io import atomic_write_json
from .args import OptQuantTrainingArguments
from .common_loss import CommonLossCallback
from .record import run_record
from .schedule import get_wsd_scheduler
from .snapshots import EvalSnapshotCallback

__all__ = ["OptQuantTrainer"]

logger = logging.getLogger(__name__)


class OptQuantTrainer(Trainer):
    """Drop-in ``Trainer``; pass ``optimizers=(opt, sched)`` to bypass the built-in choice as usual.

    Extra keyword ``block_size`` (tokens per sequence) lets the trainer count tokens when the
    Trainer's own token counting is off; ``run_info`` is merged into ``run.json``, written at the end
    of ``train()`` (``record_on_train_end=False``: by the caller, with ``write_run_record()``).
    """

    def __init__(self, model=None, args: OptQuantTrainingArguments | None = None, *trainer_args,
                 block_size: int | None = None, run_info: dict | None = None, record_on_train_end: bool = True,
                 **kwargs):
        if not isinstance(args, OptQuantTrainingArguments):
            raise ConfigError("args", "OptQuantTrainer needs OptQuantTrainingArguments",
                              "build the arguments with hf_optquant.OptQuantTrainingArguments(...)")
        if model is None:
            raise ConfigError("model", "OptQuantTrainer needs a model instance", "pass model=AutoModelForCausalLM...")
        self.qat_config = None
        if args.qat is not None:
            from ..qat import QATConfig, prepare_qat

            self.qat_config = QATConfig.from_dict(args.qat)
            # Before the optimizer exists, so it routes the fake-quant layers' own parameters.
            model = prepare_qat(model, self.qat_config)
        user_optimizers = kwargs.get("optimizers", (None, None))
        if user_optimizers[0] is None:
            # Check the routing now, so a model the optimizer cannot train fails before any output.
            from ..optim import route_parameters

            route_parameters(model)
        self.block_size = block_size
        self.run_info = dict(run_info or {})
        self.record_on_train_end = record_on_train_end
        self._trained = False
        super().__init__(model, args, *trainer_args, **kwargs)
        self.common_loss_callback = None
        if args.save_at_eval_loss is not None:
            self.common_loss_callback = CommonLossCallback(self, args.save_at_eval_loss)
            self.add_callback(self.common_loss_callback)
        if args.snapshot_at_eval:
            self.add_callback(EvalSnapshotCallback(self))

    # --- optimizer and schedule -------------------------------------------------------
    def create_optimizer(self, model=None):
        if self.optimizer is None:
            from ..optim import build_optimizer

            self.optimizer = build_optimizer(
                self.args.optimizer,
                model if model is not None else self.model,
                lr=self.args.learning_rate,
                weight_decay=self.args.weight_decay,
                **self.args.optimizer_kwargs,
            )
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and self.args.schedule == "wsd":
            self.lr_scheduler = get_wsd_scheduler(optimizer or self.optimizer, num_training_steps, self.args.wsd)
            self._created_lr_scheduler = True
            return self.lr_scheduler
        return super().create_scheduler(num_training_steps, optimizer)

    # --- bookkeeping ------------------------------------------------------------------
    def tokens_seen(self, step: int | None = None) -> int:
        seen = int(getattr(self.state, "num_input_tokens_seen", 0) or 0)
        if seen > 0 and step is None:
            return seen
        step = self.state.global_step if step is None else step
        if self.block_size is None:
            return seen
        per_step = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps
        return int(step * per_step * self.args.world_size * self.block_size)

    def train(self, *args, **kwargs):
        """``Trainer.train``, then ``run.json`` from what the run logged: no evaluation or save of its own,
        so a script's own ``evaluate()``/``save_model()`` run once (an ``evaluate()`` after training
        updates ``run.json``'s final loss). ``record_on_train_end=False`` leaves ``run.json`` to the caller."""
        self._trained = False
        start = time.time()
        out = super().train(*args, **kwargs)
        self.run_info["wall_time_s"] = time.time() - start
        self._trained = True
        if self.record_on_train_end and self.is_world_process_zero():
            self.write_run_record()
        return out

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval", **kwargs):
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix, **kwargs)
        # The script's evaluation after training is the run's final one (on the trainer's own eval set).
        if (self._trained and self.record_on_train_end and eval_dataset is None and metric_key_prefix == "eval"
                and self.is_world_process_zero()):
            self.write_run_record()
        return metrics

    def write_run_record(self, **extra) -> Path:
        rec = run_record(self, **extra)
        return atomic_write_json(Path(self.args.output_dir) / "run.json", rec)
