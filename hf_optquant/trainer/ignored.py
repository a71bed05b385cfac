"""``TrainingArguments`` fields that ``OptQuantTrainer`` does not use: set to anything but their default,
they are an error naming the field that wins, instead of being silently ignored.

The optimizer comes from ``optimizer``/``optimizer_kwargs`` (never from ``optim``, ``optim_args`` or
``adam_*``); with ``schedule="wsd"`` the schedule comes from the ``wsd_*`` fields (never from
``lr_scheduler_type``, ``lr_scheduler_kwargs`` or ``warmup_*``).
"""
from __future__ import annotations

import dataclasses
import enum

from ..errors import ConfigError

__all__ = ["OPTIMIZER_FIELDS", "SCHEDULE_FIELDS", "check_ignored_fields"]

# field -> (the field that wins, how to say the same thing with it)
OPTIMIZER_FIELDS = {
    "optim": ("optimizer", "choose one of the six with optimizer (adamw, muon, psgd, scion, shampoo, soap)"),
    "optim_args": ("optimizer_kwargs", 'put the hyperparameters in optimizer_kwargs, e.g. \'{"betas": [0.9, 0.95]}\''),
    "adam_beta1": ("optimizer_kwargs", 'set optimizer_kwargs \'{"betas": [0.9, 0.95]}\''),
    "adam_beta2": ("optimizer_kwargs", 'set optimizer_kwargs \'{"betas": [0.9, 0.95]}\''),
    "adam_epsilon": ("optimizer_kwargs", 'set optimizer_kwargs \'{"eps": 1e-8}\''),
}
SCHEDULE_FIELDS = {
    "lr_scheduler_type": ("schedule", "set schedule: hf to use lr_scheduler_type, or remove it to keep WSD"),
    "lr_scheduler_kwargs": ("schedule", "set schedule: hf to use lr_scheduler_kwargs, or remove them to keep WSD"),
    "warmup_steps": ("wsd_warmup_fraction", "set wsd_warmup_fraction (or schedule: hf), and remove warmup_steps"),
    "warmup_ratio": ("wsd_warmup_fraction", "set wsd_warmup_fraction (or schedule: hf), and remove warmup_ratio"),
}


def _default(cls: type, name: str):
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default_factory() if f.default is dataclasses.MISSING else f.default
    return None


def _plain(value):
    return value.value if isinstance(value, enum.Enum) else value


def _is_default(args, name: str) -> bool:
    # The default of the arguments' own class (TRL's SFTConfig, say, changes some of them).
    value, default = _plain(getattr(args, name, None)), _plain(_default(type(args), name))
    return value == default or (value in (None, {}, "") and default in (None, {}, ""))


def check_ignored_fields(args) -> None:
    """Raise ``ConfigError`` for the first field set explicitly that ``OptQuantTrainer`` would ignore.

    Call before ``TrainingArguments.__post_init__``, which rewrites some of these fields.
    """
    fields = dict(OPTIMIZER_FIELDS)
    if args.schedule == "wsd":
        fields.update(SCHEDULE_FIELDS)
    for name, (wins, fix) in fields.items():
        if hasattr(args, name) and not _is_default(args, name):
            raise ConfigError(name, f"{_plain(getattr(args, name))!r} would be ignored: OptQuantTrainer takes "
                              f"this from {wins}={_plain(getattr(args, wins))!r}", fix)
