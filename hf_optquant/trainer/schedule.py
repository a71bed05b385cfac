"""The paper's warmup-stable-decay learning-rate schedule.

``transformers.get_wsd_schedule`` warms up from 0; the paper warms up from 0.001 x peak,
so the multiplier is written here as a plain function and wrapped in ``LambdaLR``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from torch.optim.lr_scheduler import LambdaLR

from ..errors import ConfigError

__all__ = ["WSDSchedule", "wsd_multiplier", "get_wsd_scheduler"]


@dataclass(frozen=True, kw_only=True)
class WSDSchedule:
    warmup_fraction: float = 0.05
    decay_fraction: float = 0.20
    warmup_start_factor: float = 0.001
    final_factor: float = 0.0

    def __post_init__(self):
        for name in ("warmup_fraction", "decay_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"wsd_{name}", f"must be in [0, 1], got {v}", "use e.g. 0.05 warm-up and 0.2 decay")
        if self.warmup_fraction + self.decay_fraction > 1.0:
            raise ConfigError("wsd_decay_fraction", "warm-up plus decay exceed the whole run",
                              "make wsd_warmup_fraction + wsd_decay_fraction <= 1")
        if not 0.0 <= self.warmup_start_factor <= 1.0:
            raise ConfigError("wsd_warmup_start_factor", "must be in [0, 1]", "use 0.001 (the paper's)")


def wsd_multiplier(step: int, total_steps: int, sched: WSDSchedule = WSDSchedule()) -> float:
    """LR multiplier at ``step`` (0-based) of ``total_steps``: linear warm-up from
    ``warmup_start_factor``, constant 1, then linear decay to ``final_factor`` at the last step."""
    warm = int(math.ceil(sched.warmup_fraction * total_steps))
    decay = int(math.ceil(sched.decay_fraction * total_steps))
    decay_start = total_steps - decay
    if warm > 0 and step < warm:
        return sched.warmup_start_factor + (1.0 - sched.warmup_start_factor) * step / warm
    if decay > 0 and step >= decay_start:
        frac = min(1.0, (step - decay_start + 1) / decay)
        return 1.0 + (sched.final_factor - 1.0) * frac
    return 1.0


def get_wsd_scheduler(optimizer, total_steps: int, sched: WSDSchedule = WSDSchedule()) -> LambdaLR:
    if total_steps <= 0:
        raise ConfigError("max_steps", "the WSD schedule needs a known number of steps", "set max_steps > 0")
    return LambdaLR(optimizer, partial(wsd_multiplier, total_steps=total_steps, sched=sched))
