"""Which checkpoint PTQ quantizes: the full-precision run of each (optimizer, size) (the best of an lr
sweep), the Common Loss (the lowest validation loss every optimizer reaches at a size) and each run's
checkpoint where it first reaches it (docs/method.md section 3)."""
from __future__ import annotations

from ..io import read_json
from ..trainer import COMMON_LOSS_DIR
from ..trainer.snapshots import list_snapshots
from .config import RunSpec, StudyConfig
from .runs import best_lr, run_dir

__all__ = ["common_loss_for_size", "cl_checkpoint", "selected_fp_run"]


def selected_fp_run(cfg: StudyConfig, optimizer: str, size: str) -> RunSpec:
    """The full-precision run of ``optimizer`` at ``size``: the best learning rate's when the study sweeps it."""
    lr = best_lr(cfg, optimizer, size) if cfg.lr_grid.get(optimizer) else None
    return RunSpec(optimizer=optimizer, size=size, precision="full", lr=lr)


def common_loss_for_size(cfg: StudyConfig, size: str) -> dict:
    """``{"value", "source", "per_optimizer_min"}``; the configured value wins if set."""
    mins = {}
    for opt in cfg.optimizers:
        d = run_dir(cfg, selected_fp_run(cfg, opt, size))
        losses = [s["eval_loss"] for s in list_snapshots(d)]
        rec = read_json(d / "run.json")
        if rec.get("final_eval_loss") is not None:
            losses.append(rec["final_eval_loss"])
        mins[opt] = min(losses) if losses else None
    if cfg.common_loss is not None:
        return {"value": cfg.common_loss, "source": "config", "per_optimizer_min": mins}
    reached = [v for v in mins.values() if v is not None]
    return {"value": max(reached) if reached else None, "source": "max over optimizers of min eval loss",
            "per_optimizer_min": mins}


def cl_checkpoint(cfg: StudyConfig, spec: RunSpec, cl_value: float | None) -> dict:
    """The checkpoint to quantize: first snapshot at or below the CL, else the final model (marked)."""
    d = run_dir(cfg, spec)
    saved = d / COMMON_LOSS_DIR / "common_loss.json"
    if saved.exists():
        rec = read_json(saved)
        return {"path": str(d / COMMON_LOSS_DIR), "step": rec["step"], "tokens": rec["tokens"],
                "eval_loss": rec["eval_loss"], "reached": True}
    if cl_value is not None:
        for s in list_snapshots(d):
            # A small tolerance: the run defining the CL reaches it exactly.
            if s["eval_loss"] <= cl_value + 1e-9:
                return {"path": s["path"], "step": s["step"], "tokens": s["tokens"], "eval_loss": s["eval_loss"],
                        "reached": True}
    rec = read_json(d / "run.json")
    final_loss = rec["final_eval_loss"]
    reached = cl_value is not None and final_loss is not None and final_loss <= cl_value + 1e-9
    return {"path": str(d), "step": rec["global_step"], "tokens": rec["tokens_seen"],
            "eval_loss": final_loss, "reached": bool(reached)}
