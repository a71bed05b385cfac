"""Common-Loss checkpointing: save the model the first time eval loss crosses a threshold.

The paper quantizes every optimizer's run at the point where it first reaches the
Common Loss, so that PTQ starts from equal quality across optimizers.
"""
from __future__ import annotations

import logging
from pathlib import Path

from transformers import TrainerCallback

from ..io import atomic_write_json, read_json

__all__ = ["CommonLossCallback", "COMMON_LOSS_DIR"]

logger = logging.getLogger(__name__)
COMMON_LOSS_DIR = "common_loss"


class CommonLossCallback(TrainerCallback):
    """Saves ``<output_dir>/common_loss/`` (model, tokenizer, ``common_loss.json``) once.

    Holds the trainer to save through its ``save_model_collective`` (which unwraps DDP/accelerate,
    gathers FSDP2 shards and saves tied weights the HF way). A run resumed after the save keeps the saved one.
    """

    def __init__(self, trainer, threshold: float):
        self.trainer = trainer
        self.threshold = float(threshold)

    @property
    def path(self) -> Path:
        return Path(self.trainer.args.output_dir) / COMMON_LOSS_DIR

    def record(self) -> dict | None:
        f = self.path / "common_loss.json"
        return read_json(f) if f.exists() else None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or "eval_loss" not in metrics or self.record() is not None:
            return
        loss = float(metrics["eval_loss"])
        if loss >= self.threshold:
            return
        rec = {
            "threshold": self.threshold,
            "eval_loss": loss,
            "step": int(state.global_step),
            "tokens": int(self.trainer.tokens_seen(state.global_step)),
            "path": str(self.path),
        }
        # Every rank joins (FSDP2 gathers the shards); the main process alone writes.
        self.trainer.save_model_collective(self.path, lambda tmp: atomic_write_json(tmp / "common_loss.json", rec))
        if self.trainer.is_world_process_zero():
            logger.info("Common Loss %.4f reached at step %d (eval loss %.4f): saved %s",
                        self.threshold, rec["step"], loss, self.path)
