"""What the trainer supports for sharded training, checked before anything runs, and its FSDP2 checkpoints.

Supported: one process, DDP, and FSDP2 (accelerate's ``fsdp_version: 2``, or ``fsdp: true`` with
``fsdp_config.version: 2`` in the training YAML) on GPUs / accelerators, with every optimizer (the matrix
methods through ``optim.distributed.GatheredOptimizer``). Refused with one line, never silently downgraded:
FSDP on CPU (accelerate only shards on accelerator backends; on CPU it quietly trains as DDP), FSDP1, FSDP
on XLA, and DeepSpeed with a matrix optimizer (ZeRO hands the optimizer flat 1-D partitions, not matrices).

Optimizer checkpoints under FSDP2 are one file per rank (``optimizer_shard-rank{r}-of-{world}.pt``): each
rank's part of the state (element-wise shards, and the whole-matrix state of the matrices it owns).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import ConfigError

__all__ = ["fsdp_requested", "check_deepspeed", "check_parallelism", "optimizer_shard_path", "save_optimizer_shard",
           "load_optimizer_shard"]

_FSDP2_HINT = "launch with accelerate launch --config_file trainer_configs/accelerate_fsdp2.yaml on GPUs"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def fsdp_requested(args) -> bool:
    """FSDP asked for through the training arguments or through ``accelerate launch``'s environment."""
    return bool(args.fsdp) or _env_true("ACCELERATE_USE_FSDP")


def _fsdp_version(args) -> int:
    if args.fsdp:
        return int((args.fsdp_config or {}).get("version", 2))
    return int(os.environ.get("FSDP_VERSION", "1"))  # accelerate's own default when launched with FSDP


def _on_cpu(args) -> bool:
    if args.use_cpu or _env_true("ACCELERATE_USE_CPU"):
        return True
    accel = getattr(torch, "accelerator", None)
    return not (accel is not None and accel.is_available()) and not torch.cuda.is_available()


def _deepspeed(args) -> bool:
    return bool(args.deepspeed) or _env_true("ACCELERATE_USE_DEEPSPEED")


def check_deepspeed(args) -> None:
    """Before ``TrainingArguments.__post_init__`` (which would import DeepSpeed first)."""
    if _deepspeed(args) and args.optimizer != "adamw":
        raise ConfigError("deepspeed", f"DeepSpeed ZeRO hands {args.optimizer} flat 1-D partitions, not the "
                          "whole matrices it preconditions", f"use FSDP2 ({_FSDP2_HINT}) or optimizer adamw")


def check_parallelism(args, *, on_cpu: bool | None = None) -> None:
    """Raise ``ConfigError`` for a parallel setup the trainer would not run as asked (after
    ``TrainingArguments.__post_init__``; ``on_cpu``: default, whether this process trains on CPU)."""
    check_deepspeed(args)
    if not fsdp_requested(args):
        return
    if _deepspeed(args):
        raise ConfigError("fsdp", "is set together with DeepSpeed", "use one of them (FSDP2 recommended)")
    if (args.fsdp_config or {}).get("xla"):
        raise ConfigError("fsdp_config", "FSDP on XLA is not supported", "use FSDP2 on GPUs (fsdp_config.xla: false)")
    version = _fsdp_version(args)
    if version != 2:
        raise ConfigError("fsdp_config", f"FSDP{version} is not supported (the matrix optimizers need FSDP2's "
                          "per-parameter DTensor shards)", "set fsdp_config.version: 2 (or fsdp_version: 2 in the "
                          "accelerate config)")
    if _on_cpu(args) if on_cpu is None else on_cpu:
        raise ConfigError("fsdp", "accelerate does not shard on CPU (it would silently train as DDP)",
                          f"{_FSDP2_HINT}, or drop fsdp on CPU (DDP: torchrun --nproc_per_node N)")


def optimizer_shard_path(checkpoint: str | Path, rank: int, world: int) -> Path:
    return Path(checkpoint) / f"optimizer_shard-rank{rank}-of-{world}.pt"


def save_optimizer_shard(optimizer, checkpoint: str | Path, rank: int, world: int) -> Path:
    """This rank's optimizer state into ``checkpoint`` (written to a temp name, then renamed)."""
    from ..optim.distributed import sharded_state_dict

    path = optimizer_shard_path(checkpoint, rank, world)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save(sharded_state_dict(optimizer), tmp)
    os.replace(tmp, path)
    return path


def load_optimizer_shard(optimizer, checkpoint: str | Path, rank: int, world: int) -> None:
    from ..optim.distributed import load_sharded_state_dict

    path = optimizer_shard_path(checkpoint, rank, world)
    if not path.exists():
        found = sorted(p.name for p in Path(checkpoint).glob("optimizer_shard-rank*-of-*.pt"))
        raise ConfigError("resume_from_checkpoint", f"{checkpoint} has no optimizer shard for rank {rank} of "
                          f"{world} (found: {', '.join(found) or 'none'})",
                          "resume with the number of processes the checkpoint was written with")
    load_sharded_state_dict(optimizer, torch.load(path, map_location="cpu", weights_only=True))
