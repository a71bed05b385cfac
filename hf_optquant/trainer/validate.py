"""Range checks on the ``TrainingArguments`` fields that ``transformers`` leaves to fail mid-run.

``TrainingArguments`` accepts a batch size of 0, ``eval_steps: 0`` or a learning rate of 1e300 and fails
only inside the training loop (a ZeroDivisionError, a hang, an overflow), after the run dir was written.
These checks run in ``OptQuantTrainingArguments.__post_init__``, before anything is written.
"""
from __future__ import annotations

import math

from ..errors import ConfigError

__all__ = ["check_steps_before_defaults", "validate_training_arguments", "MAX_LEARNING_RATE"]

# Scion's sign-LMO embedding lr is 1.0, the largest any preset uses; above 10 every optimizer here diverges.
MAX_LEARNING_RATE = 10.0

_POSITIVE_INTS = {"per_device_train_batch_size": 16, "per_device_eval_batch_size": 16,
                  "gradient_accumulation_steps": 1}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _steps(args, name: str, strategy: str) -> None:
    """``eval_steps``/``save_steps``/``logging_steps``: an integer >= 1, or a ratio in (0, 1) of the run."""
    v = getattr(args, name)
    if v is None or str(getattr(args, strategy, "steps")).split(".")[-1].lower() != "steps":
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0 \
            or (v > 1 and v != int(v)):
        raise ConfigError(name, f"must be a whole number of steps >= 1 (or a fraction of the run in (0, 1)), "
                          f"got {v!r}", f"use e.g. {name}: 50")


def check_steps_before_defaults(args) -> None:
    """Before ``TrainingArguments.__post_init__``, which silently replaces ``eval_steps: 0`` by logging_steps."""
    for name, strategy in (("eval_steps", "eval_strategy"), ("save_steps", "save_strategy"),
                           ("logging_steps", "logging_strategy")):
        _steps(args, name, strategy)


def validate_training_arguments(args) -> None:
    for name, example in _POSITIVE_INTS.items():
        v = getattr(args, name)
        if not _is_int(v) or v < 1:
            raise ConfigError(name, f"must be a positive integer, got {v!r}", f"use e.g. {name}: {example}")
    lr = args.learning_rate
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or not 0 < lr <= MAX_LEARNING_RATE:
        raise ConfigError("learning_rate", f"must be a finite number in (0, {MAX_LEARNING_RATE:g}], got {lr!r}",
                          "use e.g. 3e-3, or leave it unset for the optimizer preset's")
    if not _is_int(args.max_steps) or args.max_steps == 0 or args.max_steps < -1:
        raise ConfigError("max_steps", f"must be a whole number >= 1 (or -1: from num_train_epochs), "
                          f"got {args.max_steps!r}", "use e.g. max_steps: 1000")
    if args.max_steps == -1 and not (math.isfinite(args.num_train_epochs) and args.num_train_epochs > 0):
        raise ConfigError("num_train_epochs", f"must be positive when max_steps is unset, got "
                          f"{args.num_train_epochs!r}", "set max_steps: 1000 or num_train_epochs: 1")
    _steps(args, "eval_steps", "eval_strategy")
    _steps(args, "save_steps", "save_strategy")
    _steps(args, "logging_steps", "logging_strategy")
    if args.save_total_limit is not None and (not _is_int(args.save_total_limit) or args.save_total_limit < 1):
        raise ConfigError("save_total_limit", f"must be >= 1 or null, got {args.save_total_limit!r} (0 would "
                          "delete every checkpoint, so nothing could resume)", "use save_total_limit: 2")
    if not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        raise ConfigError("weight_decay", f"must be a finite number >= 0, got {args.weight_decay!r}",
                          "use e.g. 0.1, or leave it unset for the optimizer preset's")
