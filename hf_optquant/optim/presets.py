"""One validated preset per optimizer: the paper's hyperparameters (docs/method.md section 2, docs/optimizers.md)
plus learning rates of our own for the tiny CPU sizes (the paper sweeps lr per size).

Each field's help says where its default comes from: "paper" (the authors' settings),
"library" (pytorch_optimizer's / torch's default, the paper being silent) or "ours".
"""
from __future__ import annotations

import dataclasses
import math
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
    "preset_fields",
]

SIDE_OPTIMIZERS = ("adamw", "same")


def _h(text: str) -> dict:
    return {"help": text}


def _fail(name: str, value, want: str, example: str):
    raise ConfigError(name, f"must be {want}, got {value!r}", f"use e.g. {example}")


@dataclass(kw_only=True)
class _Base:
    """Shared by all presets: peak lr of the hidden matrices and their decoupled weight decay."""

    lr: float = 3e-3
    weight_decay: float = field(default=0.0, metadata=_h(
        "paper: decoupled weight decay, 0; when non-zero it applies to the side groups too (code: ant)"))

    # Field-name -> kind, checked in __post_init__ for every preset that has the field.
    _POSITIVE = ("lr", "embed_lr", "gain_lr", "eps", "side_eps", "epsilon", "grafting_epsilon", "hidden_scale",
                 "embed_scale", "update_prob_min")
    _POSITIVE_INT = ("ns_steps", "precondition_frequency", "start_preconditioning_step", "max_preconditioner_dim",
                     "max_precondition_dim", "max_size_triangular", "min_ndim_triangular")
    _NON_NEGATIVE = ("weight_decay", "update_prob_flat_steps", "update_prob_decay")
    _BETAS = ("betas", "side_betas")

    def __post_init__(self):
        names = {f.name for f in dataclasses.fields(self)}
        for name in self._POSITIVE:
            v = getattr(self, name, None) if name in names else None
            if v is not None and not (_is_number(v) and v > 0 and math.isfinite(v)):
                _fail("learning_rate" if name == "lr" else name, v, "a positive number", "3e-3")
        for name in self._POSITIVE_INT:
            v = getattr(self, name, None) if name in names else None
            if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
                _fail(name, v, "a positive integer", "10")
        for name in self._NON_NEGATIVE:
            v = getattr(self, name, None) if name in names else None
            if v is not None and not (_is_number(v) and v >= 0 and math.isfinite(v)):
                _fail(name, v, "a number >= 0", "0")
        for name in self._BETAS:
            if name in names:
                b = getattr(self, name)
                try:
                    b = tuple(float(x) for x in b)
                except (TypeError, ValueError):
                    b = None
                if b is None or len(b) != 2 or not all(0 <= x < 1 for x in b):
                    _fail(name, getattr(self, name), "two numbers in [0, 1)", "[0.9, 0.95]")
                setattr(self, name, b)
        if "side_optimizer" in names and self.side_optimizer not in SIDE_OPTIMIZERS:
            _fail("side_optimizer", self.side_optimizer, f"one of {', '.join(SIDE_OPTIMIZERS)}", "adamw")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(kw_only=True)
class _Side:
    """The embedding/head and gain groups under AdamW (paper: Muon's side optimizer; [gap] for the others,
    which use the same settings here)."""

    embed_lr: float = field(default=3e-3, metadata=_h("paper (Muon): AdamW lr of the embedding / LM head group"))
    gain_lr: float = field(default=3e-3, metadata=_h("paper (Muon): AdamW lr of the 1-D (norm gain) group"))
    side_betas: tuple[float, float] = field(default=(0.9, 0.95), metadata=_h("paper (Muon): AdamW betas, side groups"))
    side_eps: float = field(default=1e-6, metadata=_h("paper (Muon): AdamW eps of the side groups"))


@dataclass(kw_only=True)
class _SideChoice:
    """PSGD, Shampoo, SOAP: as in the authors' framework (gvlassis/ant), the tied embedding and the gains go
    to the optimizer under study at the hidden lr (``side_optimizer="same"``); ``"adamw"`` is our option of
    an AdamW side group with Muon's side settings."""

    side_optimizer: str = field(default="same", metadata=_h(
        "code (ant): 'same' gives the embedding/head and gains to the optimizer under study as their own groups; "
        "'adamw' puts them under AdamW (side_* settings)"))
    embed_lr: float | None = field(default=None, metadata=_h(
        "code (ant): None is the hidden lr with side_optimizer='same', 3e-3 (Muon's side lr) with 'adamw'"))
    gain_lr: float | None = field(default=None, metadata=_h("lr of the 1-D (gain) group; None as embed_lr"))
    side_betas: tuple[float, float] = field(default=(0.9, 0.95), metadata=_h(
        "paper (Muon): AdamW betas of the side groups when side_optimizer='adamw'"))
    side_eps: float = field(default=1e-6, metadata=_h("paper (Muon): AdamW eps of the side groups ('adamw')"))

    def side_lrs(self) -> tuple[float, float]:
        """(embedding lr, gain lr) after the None defaults."""
        default = self.lr if self.side_optimizer == "same" else 3e-3
        return (default if self.embed_lr is None else self.embed_lr,
                default if self.gain_lr is None else self.gain_lr)


@dataclass(kw_only=True)
class AdamWPreset(_Base):
    lr: float = field(default=3e-3, metadata=_h("ours: peak lr for the tiny sizes"))
    betas: tuple[float, float] = field(default=(0.9, 0.95), metadata=_h("paper: (0.9, 0.95)"))
    eps: float = field(default=1e-8, metadata=_h("paper: 1e-8"))
    embed_lr: float | None = field(default=None, metadata=_h("lr of the embedding / LM head; None: lr"))
    gain_lr: float | None = field(default=None, metadata=_h("lr of the 1-D parameters; None: lr"))


@dataclass(kw_only=True)
class MuonPreset(_Base, _Side):
    lr: float = field(default=2e-2, metadata=_h("ours: Muon lr of the hidden matrices for the tiny sizes"))
    momentum: float = field(default=0.95, metadata=_h("paper: Nesterov momentum 0.95"))
    nesterov: bool = field(default=True, metadata=_h("paper: True"))
    ns_steps: int = field(default=5, metadata=_h("paper: 5 Newton-Schulz steps"))
    ns_coefficients: tuple[float, float, float] = field(default=(3.4445, -4.7750, 2.0315),
                                                        metadata=_h("paper: quintic coefficients"))
    adjust_lr_fn: str = field(default="original", metadata=_h(
        "paper: 'original' scales the update by sqrt(max(1, rows/cols)); 'match_rms_adamw' is Moonlight's 0.2 sqrt(max)"))

    def __post_init__(self):
        super().__post_init__()
        if self.adjust_lr_fn not in ("original", "match_rms_adamw"):
            _fail("adjust_lr_fn", self.adjust_lr_fn, "'original' or 'match_rms_adamw'", "original")
        if not 0 <= self.momentum < 1:
            _fail("momentum", self.momentum, "in [0, 1)", "0.95")
        self.ns_coefficients = tuple(float(c) for c in self.ns_coefficients)
        if len(self.ns_coefficients) != 3:
            _fail("ns_coefficients", self.ns_coefficients, "three numbers", "[3.4445, -4.7750, 2.0315]")


@dataclass(kw_only=True)
class PSGDPreset(_Base, _SideChoice):
    lr: float = field(default=1e-2, metadata=_h("ours: Kron lr for the tiny sizes (80 steps of tiny.yaml: 5.78 eval loss at 1e-2, 5.80 at 5e-3, 6.75 at 3e-2)"))
    momentum: float = field(default=0.9, metadata=_h("library: Kron momentum 0.9"))
    max_size_triangular: int = field(default=12288, metadata=_h("paper: 12288"))
    min_ndim_triangular: int = field(default=2, metadata=_h("paper: 2"))
    update_prob_flat_steps: int = field(default=500, metadata=_h("paper: probability 1.0 for 500 steps"))
    update_prob_decay: float = field(default=0.001, metadata=_h("paper: then exponential decay at rate 0.001"))
    update_prob_min: float = field(default=0.03, metadata=_h("paper: floor 0.03"))
    balance_prob: float = field(default=0.01, metadata=_h("library: probability of rebalancing the Kronecker factors"))

    def __post_init__(self):
        super().__post_init__()
        for name in ("momentum", "balance_prob"):
            if not 0 <= getattr(self, name) < 1:
                _fail(name, getattr(self, name), "in [0, 1)", "0.9")
        if self.update_prob_min > 1:
            _fail("update_prob_min", self.update_prob_min, "a probability in (0, 1]", "0.03")


@dataclass(kw_only=True)
class ScionPreset(_Base):
    lr: float = field(default=2e-2, metadata=_h("ours: lr of the spectral-LMO hidden group for the tiny sizes"))
    momentum: float = field(default=0.1, metadata=_h("library convention: weight of the new gradient (1 - beta)"))
    hidden_scale: float = field(default=1.0, metadata=_h("library: radius of the spectral LMO"))
    embed_lr: float = field(default=1.0, metadata=_h("paper: sign LMO at lr 1 for the tied embedding / head"))
    embed_scale: float = field(default=1.0, metadata=_h("library: radius of the sign LMO"))
    gain_lr: float = field(default=3e-3, metadata=_h("paper: gains at lr 3e-3 (under AdamW here)"))
    side_betas: tuple[float, float] = field(default=(0.9, 0.95), metadata=_h("ours: AdamW betas of the gains"))
    side_eps: float = field(default=1e-6, metadata=_h("ours: AdamW eps of the gains"))

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.momentum <= 1:
            _fail("momentum", self.momentum, "in (0, 1]", "0.1")


@dataclass(kw_only=True)
class ShampooPreset(_Base, _SideChoice):
    """Meta's DistributedShampoo + AdamGraftingConfig as the authors call it (``hf_optquant.optim.shampoo``)."""

    lr: float = field(default=3e-3, metadata=_h("ours: lr (the grafted step size) for the tiny sizes"))
    betas: tuple[float, float] = field(default=(0.95, 0.95), metadata=_h(
        "paper: (0.95, 0.95): beta1 of the filtered gradient, beta2 of the Kronecker factors"))
    epsilon: float = field(default=1e-10, metadata=_h("paper: 1e-10, absolute, added before the eigendecomposition"))
    grafting: str = field(default="adam", metadata=_h(
        "paper: Adam grafting (layer-wise norm); also rmsprop, adagrad, sgd, none (Meta's other configs)"))
    grafting_beta2: float | None = field(default=None, metadata=_h("code (ant): None is betas[1]"))
    grafting_epsilon: float | None = field(default=None, metadata=_h("code (ant): None is epsilon"))
    momentum: float = field(default=0.0, metadata=_h("code (ant): Meta's momentum on the search direction, 0"))
    nesterov: bool = field(default=False, metadata=_h("code (ant): Meta's default, False"))
    precondition_frequency: int = field(default=20, metadata=_h("paper: 20"))
    start_preconditioning_step: int | None = field(default=None, metadata=_h(
        "code (ant): Meta's -1, i.e. None: the precondition frequency; Adam-graft-only steps before it (Meta "
        "requires >= the frequency; any step >= 1 works here)"))
    max_preconditioner_dim: int = field(default=12288, metadata=_h("paper: 12288 (larger dims are blocked)"))
    bias_correction: bool = field(default=True, metadata=_h("paper: bias correction of the factors and moments"))
    merge_small_dims: bool = field(default=False, metadata=_h(
        "ours: False keeps a matrix with <= max_preconditioner_dim entries 2-D (two Kronecker factors); True is "
        "Meta's merging into one vector with a single (rows x cols)^2 factor (never happens at the paper's sizes)"))

    def __post_init__(self):
        super().__post_init__()
        from .shampoo import GRAFTINGS

        if self.grafting not in GRAFTINGS:
            _fail("grafting", self.grafting, f"one of {', '.join(GRAFTINGS)}", "adam")
        if not 0 <= self.momentum < 1:
            _fail("momentum", self.momentum, "in [0, 1)", "0")
        if self.grafting_beta2 is not None and not (_is_number(self.grafting_beta2) and 0 <= self.grafting_beta2 <= 1):
            _fail("grafting_beta2", self.grafting_beta2, "a number in [0, 1]", "0.95")


@dataclass(kw_only=True)
class SOAPPreset(_Base, _SideChoice):
    lr: float = field(default=3e-3, metadata=_h("ours: lr for the tiny sizes"))
    betas: tuple[float, float] = field(default=(0.95, 0.95), metadata=_h("library: (0.95, 0.95)"))
    eps: float = field(default=1e-8, metadata=_h("library: 1e-8"))
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


def preset_fields(name: str) -> list[str]:
    """The hyperparameter names that ``name`` accepts."""
    return [f.name for f in dataclasses.fields(PRESETS[name])]


def resolve_preset(name: str, **overrides):
    """The validated preset of optimizer ``name`` with ``overrides``; ``lr=None`` keeps the preset's lr."""
    if name not in PRESETS:
        raise ConfigError("optimizer", f"unknown optimizer {name!r}", f"use one of {', '.join(PRESETS)}")
    valid = preset_fields(name)
    for key in overrides:
        if key not in valid:
            raise ConfigError(key, f"is not a hyperparameter of optimizer {name!r}",
                              f"use one of {', '.join(valid)}")
    if overrides.get("lr", 0) is None:
        overrides.pop("lr")
    return PRESETS[name](**overrides)
