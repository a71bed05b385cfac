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
    Trainer's own token counting is off; ``run_info`` is merged into ``run.json``.
    """

    def __init__(self, model=None, args: OptQuantTrainingArguments | None = None, *trainer_args,
                 block_size: int | None = None, run_info: dict | None = None, **kwargs):
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

    def _run_epoch(self, *args, **kwargs):
        # HF Trainer's loop trains a step before it first compares global_step with max_steps, so a
        # run resumed from its last checkpoint (killed after checkpoint-N of N, before run.json)
        # trained step N+1. No epoch starts once the budget is spent.
        if self.state.max_steps > 0 and self.state.global_step >= self.state.max_steps:
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)

    def train(self, *args, **kwargs):
        """Train, then evaluate, save the final model to ``output_dir`` and write ``run.json`` last
        (so a run dir with ``run.json`` is always complete)."""
        start = time.time()
        out = super().train(*args, **kwargs)
        if getattr(self, "_initial_global_step", -1) >= out.global_step and self.state.log_history:
            # Resumed from a finished checkpoint: HF's "train_loss" of zero steps is 0/0.001 = 0, not a loss.
            summary = self.state.log_history[-1]
            if "train_loss" in summary:
                summary["train_loss"] = None
                out.metrics["train_loss"] = None
        final = self.evaluate() if self.eval_dataset is not None else {}
        self.save_model(self.args.output_dir)
        if self.is_world_process_zero():
            self.write_run_record(wall_time_s=time.time() - start, final_eval_loss=final.get("eval_loss"))
        return out

    def write_run_record(self, **extra) -> Path:
        rec = run_record(self, **extra)
        return atomic_write_json(Path(self.args.output_dir) / "run.json", rec)
