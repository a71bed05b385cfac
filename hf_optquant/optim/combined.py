"""One ``torch.optim.Optimizer`` over several library optimizers (one per parameter group).

Why hand-written: neither torch nor pytorch_optimizer ships a container optimizer that
HF Trainer, accelerate and LR schedulers accept as one object. Its ``param_groups`` are
the sub-optimizers' own group dicts, so an ``LambdaLR`` scales every group relative to
that group's base lr; ``state_dict`` nests the sub-optimizers' states.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .state_codec import decode_state, encode_state

__all__ = ["CombinedOptimizer"]


class CombinedOptimizer(torch.optim.Optimizer):
    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]):
        self.optimizers = dict(optimizers)
        params = [p for o in self.optimizers.values() for g in o.param_groups for p in g["params"]]
        super().__init__([{"params": params}], {})
        self._sync_groups()

    def _sync_groups(self) -> None:
        # load_state_dict on a sub-optimizer replaces its group dicts: re-point ours each time.
        self.param_groups = [g for o in self.optimizers.values() for g in o.param_groups]

    @property
    def state(self):  # read-only merged view (torch Optimizer API)
        merged = {}
        for o in self.optimizers.values():
            merged.update(o.state)
        return merged

    @state.setter
    def state(self, value):  # torch's Optimizer.__init__ assigns an empty state
        pass

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for o in self.optimizers.values():
            o.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"combined": {name: encode_state(o.state_dict()) for name, o in self.optimizers.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        inner = state_dict.get("combined") if isinstance(state_dict, dict) else None
        if not isinstance(inner, dict) or set(inner) != set(self.optimizers):
            got = sorted(map(str, inner)) if isinstance(inner, dict) else "no 'combined' entry"
            raise ConfigError("optimizer.pt", f"optimizer state has groups {got}, expected {sorted(self.optimizers)}",
                              "resume with the optimizer that wrote the checkpoint")
        # Decode every group first: a refused entry leaves all sub-optimizers untouched.
        decoded = {name: decode_state(inner[name], o.param_groups) for name, o in self.optimizers.items()}
        for name, o in self.optimizers.items():
            o.load_state_dict(decoded[name])
        self._sync_groups()

    def add_param_group(self, param_group: dict) -> None:
        # torch's version would append to our merged view only, and step() would never see it.
        if not self.param_groups:
            return super().add_param_group(param_group)  # torch's __init__ adding our merged group
        raise NotImplementedError("CombinedOptimizer: add the group to one of .optimizers, then rebuild it")

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={type(o).__name__}" for k, o in self.optimizers.items())
        return f"CombinedOptimizer({inner})"
