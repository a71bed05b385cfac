"""One validated preset per optimizer: the paper's hyperparameters (PAPER.md section 1)
plus learning rates of our own for the tiny CPU sizes (the paper sweeps lr per size)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import ConfigError

__all__ = [
    "AdamWPreset",
    "MuonPreset",
    "PSGDPreset",
    "ScionPreset",
    "ShampooPreset",
    "SOAPPreset",
    "PRESETS",
    "resolve_preset",
]


def _h(text: str) -> dict:
    return {"help": text}


@dataclass(kw_only=True)
class _Side:
    """AdamW settings for the embedding/head and gain groups (paper: Muon's side optimizer)."""

    embed_lr: float = field(default=3e-3, metadata=_h("AdamW lr of the embedding / LM head group"))
    gain_lr: float = field(default=3e-3, metadata=_h("AdamW lr of the 1-D (norm gain) group"))
    side_betas: tuple[float, float] = field(default=(0.9, 0.95), metadata=_h("AdamW betas of the side groups"))
    side_eps: float = field(default=1e-6, metadata=_h("AdamW eps of the side groups"))


@dataclass(kw_only=True)
class _Base:
    lr: float = 3e-3
    weight_decay: float = field(default=0.0, metadata=_h("decoupled weight decay of the hidden matrices"))

    def __post_init__(self):
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError("learning_rate", f"must be positive, got {self.lr}", "use e.g. 3e-3")
        for name in ("embed_lr", "gain_lr"):
            v = getattr(self, name, 1.0)
            if not v > 0:
                raise ConfigError(name, f"must be positive, got {v}", "use e.g. 3e-3")
        if self.weight_decay < 0:
            raise ConfigError("weight_decay", f"must be >= 0, got {self.weight_decay}", "use 0 (the paper's)")
        for name in ("betas", "side_betas"):
            b = getattr(self, name, None)
            if b is not None:
                b = tuple(float(x) for x in b)
                if len(b) != 2 or not all(0 <= x < 1 for x in b):
                    raise ConfigError(name, f"must be two numbers in [0, 1), got {b}", "use e.g. [0.9, 0.95]")
                setattr(self, name, b)


@dataclass(kw_only=True)
class AdamWPreset(_Base, _Side):
    lr: float = field(default=3e-3, metadata=_h("peak lr (all groups unless embed_lr/gain_lr differ)"))
    betas: tuple[float, float] = field(default=(0.9, 0.95), metadata=_h("paper: (0.9, 0.95)"))
    eps: float = field(default=1e-8, metadata=_h("paper: 1e-8"))
    embed_lr: float = field(default=3e-3, metadata=_h("lr of the embedding / LM head"))
    gain_lr: float = field(default=3e-3, metadata=_h("lr of the 1-D parameters"))
    side_eps: float = field(default=1e-8, metadata=_h("eps of the side groups"))


@dataclass(kw_only=True)
class MuonPreset(_Base, _Side):
    lr: float = field(default=2e-2, metadata=_h("Muon lr of the hidden matrices (ours for tiny sizes)"))
    momentum: float = field(default=0.95, metadata=_h("paper: Nesterov momentum 0.95"))
    nesterov: bool = field(default=True, metadata=_h("paper: True"))
    ns_steps: int = field(default=5, metadata=_h("paper: 5 Newton-Schulz steps"))
    ns_coefficients: tuple[float, float, float] = field(default=(3.4445, -4.7750, 2.0315),
                                                        metadata=_h("paper's quintic coefficients"))
    adjust_lr_fn: str = field(default="original",
                              metadata=_h("'original' scales by sqrt(max(1, rows/cols)) as in the paper"))


@dataclass(kw_only=True)
class PSGDPreset(_Base, _Side):
    lr: float = field(default=1e-3, metadata=_h("Kron lr (ours for tiny sizes)"))
    momentum: float = field(default=0.9, metadata=_h("Kron momentum"))
    max_size_triangular: int = field(default=12288, metadata=_h("paper: 12288"))
    min_ndim_triangular: int = field(default=2, metadata=_h("paper: 2"))
    update_prob_flat_steps: int = field(default=500, metadata=_h("paper: probability 1.0 for 500 steps"))
    update_prob_decay: float = field(default=0.001, metadata=_h("paper: then exponential decay at rate 0.001"))
    update_prob_min: float = field(default=0.03, metadata=_h("paper: floor 0.03"))


@dataclass(kw_only=True)
class ScionPreset(_Base, _Side):
    lr: float = field(default=2e-2, metadata=_h("lr of the spectral-LMO hidden group (ours)"))
    momentum: float = field(default=0.1, metadata=_h("pytorch_optimizer convention: weight of the new gradient"))
    hidden_scale: float = field(default=1.0, metadata=_h("radius of the spectral LMO"))
    embed_lr: float = field(default=1e-3, metadata=_h("lr of the sign-LMO embedding / head group (ours)"))
    embed_scale: float = field(default=1.0, metadata=_h("radius of the sign LMO"))
    gain_lr: float = field(default=3e-3, metadata=_h("paper: gains at lr 3e-3 (AdamW here)"))


@dataclass(kw_only=True)
class ShampooPreset(_Base, _Side):
    lr: float = field(default=3e-3, metadata=_h("lr (grafted step size; ours for tiny sizes)"))
    betas: tuple[float, float] = field(default=(0.95, 0.95), metadata=_h("paper: (0.95, 0.95)"))
    precondition_frequency: int = field(default=20, metadata=_h("paper: 20"))
    start_preconditioning_step: int = field(default=20, metadata=_h("grafted steps before the first preconditioner"))
    max_preconditioner_dim: int = field(default=12288, metadata=_h("paper: 12288 (no blocking at these sizes)"))
    diagonal_eps: float = field(default=1e-10, metadata=_h("paper: eps 1e-10"))
    matrix_eps: float = field(default=1e-6, metadata=_h("regulariser of the inverse roots"))
    graft: str = field(default="rmsprop", metadata=_h("grafting norm: rmsprop (Adam-like with Shampoo's momentum), "
                                                       "adagrad, sgd, sqrtn"))


@dataclass(kw_only=True)
class SOAPPreset(_Base, _Side):
    lr: float = field(default=3e-3, metadata=_h("lr (ours for tiny sizes)"))
    betas: tuple[float, float] = field(default=(0.95, 0.95), metadata=_h("SOAP betas"))
    eps: float = field(default=1e-8, metadata=_h("eps"))
    precondition_frequency: int = field(default=10, metadata=_h("paper: 10"))
    max_precondition_dim: int = field(default=12288, metadata=_h("paper: 12288"))
    precondition_1d: bool = field(default=False, metadata=_h("paper: no 1-D preconditioning"))
    correct_bias: bool = field(default=True, metadata=_h("paper: bias correction"))


PRESETS: dict[str, type] = {
    "adamw": AdamWPreset,
    "muon": MuonPreset,
    "psgd": PSGDPreset,
    "scion": ScionPreset,
    "shampoo": ShampooPreset,
    "soap": SOAPPreset,
}


def resolve_preset(name: str, **overrides):
    if name not in PRESETS:
        raise ConfigError("optimizer", f"unknown optimizer {name!r}", f"use one of {', '.join(PRESETS)}")
    cls = PRESETS[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in overrides:
        if key not in valid:
            raise ConfigError(key, f"not a hyperparameter of {name}", f"use one of {', '.join(valid)}")
    return cls(**{k: v for k, v in overrides.items() if v is not None or k != "lr"})
