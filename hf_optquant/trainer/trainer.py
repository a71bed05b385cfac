"""``OptQuantTrainer``: a ``transformers.Trainer`` that builds one of the six optimizers,
the WSD schedule, optional QAT and the Common-Loss checkpoint from ``OptQuantTrainingArguments``.

The behaviour lives in ``OptQuantTrainerMixin`` so any ``Trainer`` subclass gets it by putting the
mixin first: ``class MySFT(OptQuantTrainerMixin, SFTTrainer)`` (docs/your_script.md)."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import Trainer

from ..errors import ConfigError
from ..io import atomic_write_json
from .args import OptQuantTrainingArguments
from .common_loss_callback import CommonLossCallback
from .record import run_record
from .schedule import get_wsd_scheduler
from .snapshots import EvalSnapshotCallback

__all__ = ["OptQuantTrainerMixin", "OptQuantTrainer"]


class OptQuantTrainerMixin:
    """Optimizer, WSD schedule, QAT, Common Loss and ``run.json`` for any ``transformers.Trainer`` subclass,
    listed first among the bases; its arguments must be ``OptQuantTrainingArguments`` (for TRL: a dataclass
    deriving from both, ``class Config(OptQuantTrainingArguments, SFTConfig)``). Pass
    ``optimizers=(opt, sched)`` to bypass the built-in choice as usual.

    Extra keyword ``block_size`` (tokens per sequence) lets the trainer count tokens when the
    Trainer's own token counting is off; ``run_info`` is merged into ``run.json``, written at the end
    of ``train()`` (``record_on_train_end=False``: by the caller, with ``write_run_record()``).
    """

    def __init__(self, model=None, args: OptQuantTrainingArguments | None = None, *trainer_args,
                 block_size: int | None = None, run_info: dict | None = None, record_on_train_end: bool = True,
                 **kwargs):
        name = type(self).__name__
        if not isinstance(args, OptQuantTrainingArguments):
            raise ConfigError("args", f"{name} needs OptQuantTrainingArguments",
                              "build them with hf_optquant.OptQuantTrainingArguments(...), or for another trainer's "
                              "config a dataclass deriving from both (class C(OptQuantTrainingArguments, SFTConfig))")
        if not isinstance(model, torch.nn.Module):
            raise ConfigError("model", f"{name} needs a model instance, got {type(model).__name__}",
                              "pass model=AutoModelForCausalLM.from_pretrained(...) (QAT and the optimizer routing "
                              "need the module before training)")
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

    # --- FSDP2: sharded optimizer checkpoints, full model saves ---------------------------
    def _combined_optimizer(self):
        from ..optim import CombinedOptimizer

        opt = getattr(self.optimizer, "optimizer", self.optimizer)  # accelerate's AcceleratedOptimizer
        return opt if isinstance(opt, CombinedOptimizer) else None

    def _fsdp_ours(self) -> bool:
        return bool(self.is_fsdp_enabled and self._combined_optimizer() is not None)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        # accelerate's FSDP optimizer save maps a torch-format state dict onto parameter names; ours nests
        # several optimizers and keeps whole-matrix state on owner ranks, so each rank saves its own part.
        if not self._fsdp_ours():
            return super()._save_optimizer_and_scheduler(output_dir)
        from accelerate.utils import save_fsdp_model
        from transformers.trainer import SCHEDULER_NAME

        from .parallel import save_optimizer_shard

        save_fsdp_model(self.accelerator.state.fsdp_plugin, self.accelerator, self.model, output_dir)
        save_optimizer_shard(self._combined_optimizer(), output_dir, self.args.process_index, self.args.world_size)
        if self.args.should_save:
            torch.save(self.lr_scheduler.state_dict(), Path(output_dir) / SCHEDULER_NAME)

    def _load_optimizer_and_scheduler(self, checkpoint):
        if checkpoint is None or not self._fsdp_ours():
            return super()._load_optimizer_and_scheduler(checkpoint)
        from transformers.trainer import SCHEDULER_NAME

        from .parallel import load_optimizer_shard

        load_optimizer_shard(self._combined_optimizer(), checkpoint, self.args.process_index, self.args.world_size)
        sched = Path(checkpoint) / SCHEDULER_NAME
        if sched.exists():
            self.lr_scheduler.load_state_dict(torch.load(sched, map_location="cpu", weights_only=True))

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Under FSDP2 every rank joins the gather and the main process writes a full HF model (plain Trainer
        writes nothing with a sharded state dict); checkpoints keep accelerate's sharded model files."""
        sharded = self.is_fsdp_enabled and "FULL_STATE_DICT" not in str(self.accelerator.state.fsdp_plugin.state_dict_type)
        if not sharded or _internal_call:
            return super().save_model(output_dir, _internal_call=_internal_call)
        state = self.accelerator.get_state_dict(self.model)
        self._save(output_dir or self.args.output_dir, state_dict=state)

    def save_model_collective(self, path: str | Path, write, *, overwrite: bool = True) -> None:
        """Save a full model into ``path`` from every rank: under FSDP2 all ranks gather, the main process
        alone calls ``write(tmp_dir)`` after the weights are in ``tmp_dir`` (``atomic_dir``; others wait)."""
        from ..io import atomic_dir

        state = self.accelerator.get_state_dict(self.model) if self.is_fsdp_enabled else None
        if self.is_world_process_zero():
            with atomic_dir(Path(path), overwrite=overwrite) as tmp:
                if state is None:
                    super().save_model(str(tmp), _internal_call=True)
                else:
                    self._save(str(tmp), state_dict=state)
                write(tmp)
        self.accelerator.wait_for_everyone()

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
        """``Trainer.train``, then ``run.json`` from what the run logged: no evaluation or save of its own,
        so a script's own ``evaluate()``/``save_model()`` run once (an ``evaluate()`` after training
        updates ``run.json``'s final loss). ``record_on_train_end=False`` leaves ``run.json`` to the caller."""
        self._trained = False
        start = time.time()
        out = super().train(*args, **kwargs)
        if getattr(self, "_initial_global_step", -1) >= out.global_step and self.state.log_history:
            # Resumed from a finished checkpoint: HF's "train_loss" of zero steps is 0/0.001 = 0, not a loss.
            summary = self.state.log_history[-1]
            if "train_loss" in summary:
                summary["train_loss"] = None
                out.metrics["train_loss"] = None
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


class OptQuantTrainer(OptQuantTrainerMixin, Trainer):
    """Drop-in ``transformers.Trainer`` with the study's optimizers, WSD, QAT, Common Loss and ``run.json``."""
