"""Model-only snapshots at every evaluation, for choosing a Common-Loss checkpoint afterwards.

When the Common Loss is not known before training (it is the lowest loss that *every*
optimizer reaches), the study keeps a snapshot at each evaluation and picks, per run,
the first one whose eval loss is below the Common Loss.
"""
from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback

from ..io import atomic_write_json, read_json

__all__ = ["EvalSnapshotCallback", "SNAPSHOT_DIR", "list_snapshots"]

SNAPSHOT_DIR = "snapshots"


class EvalSnapshotCallback(TrainerCallback):
    def __init__(self, trainer):
        self.trainer = trainer

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or "eval_loss" not in metrics:
            return
        path = Path(args.output_dir) / SNAPSHOT_DIR / f"step-{state.global_step:08d}"
        if path.exists():  # re-evaluation after a resume: keep the first
            return
        rec = {"step": int(state.global_step), "tokens": int(self.trainer.tokens_seen(state.global_step)),
               "eval_loss": float(metrics["eval_loss"])}
        # Every rank joins (FSDP2 gathers the shards); the main process alone writes.
        self.trainer.save_model_collective(path, lambda tmp: atomic_write_json(tmp / "snapshot.json", rec),
                                           overwrite=False)


def list_snapshots(run_dir: str | Path) -> list[dict]:
    """Snapshots of a run, oldest first: ``[{"step", "tokens", "eval_loss", "path"}, ...]``."""
    out = []
    for p in sorted((Path(run_dir) / SNAPSHOT_DIR).glob("step-*")):
        if (p / "snapshot.json").exists():
            out.append({**read_json(p / "snapshot.json"), "path": str(p)})
    return out
