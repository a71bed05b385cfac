"""Builders: preset + routed parameters -> one combined optimizer. ``OPTIMIZERS`` is the table."""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from ..errors import ConfigError
from .combined import CombinedOptimizer
from .presets import resolve_preset
from .routing import route_parameters

__all__ = ["OPTIMIZERS", "build_optimizer", "optimizer_hparams"]


def _side_adamw(groups, p, *, betas=None, eps=None, embed_lr=None, gain_lr=None) -> dict:
    """The embedding/head and gain groups under AdamW (no weight decay, as in the paper's code)."""
    out = {}
    spec = [("embed", embed_lr if embed_lr is not None else p.embed_lr), ("gain", gain_lr if gain_lr is not None else p.gain_lr)]
    param_groups = [{"params": groups[k], "lr": lr, "name": k} for k, lr in spec if groups[k]]
    if param_groups:
        out["side"] = torch.optim.AdamW(param_groups, lr=p.embed_lr, betas=betas or p.side_betas,
                                        eps=eps if eps is not None else p.side_eps, weight_decay=0.0)
    return out


def _hidden(groups, name="hidden", **kw) -> list[dict]:
    return [{"params": groups["hidden"], "name": name, **kw}]


def _adamw(groups, p) -> dict:
    hidden = torch.optim.AdamW(_hidden(groups), lr=p.lr, betas=p.betas, eps=p.eps, weight_decay=p.weight_decay)
    return {"hidden": hidden, **_side_adamw(groups, p, betas=p.betas, eps=p.side_eps)}


def _muon(groups, p) -> dict:
    matrices = [q for q in groups["hidden"] if q.dim() == 2]
    others = [q for q in groups["hidden"] if q.dim() != 2]  # e.g. conv kernels: AdamW
    hidden = torch.optim.Muon([{"params": matrices, "name": "hidden"}], lr=p.lr, weight_decay=p.weight_decay,
                              momentum=p.momentum, nesterov=p.nesterov, ns_coefficients=tuple(p.ns_coefficients),
                              ns_steps=p.ns_steps, adjust_lr_fn=p.adjust_lr_fn)
    out = {"hidden": hidden}
    if others:
        groups = {**groups, "gain": groups["gain"] + others}
    out.update(_side_adamw(groups, p))
    return out


def _psgd(groups, p) -> dict:
    from pytorch_optimizer import Kron
    from pytorch_optimizer.optimizer.psgd import precondition_update_prob_schedule

    sched = precondition_update_prob_schedule(max_prob=1.0, min_prob=p.update_prob_min, decay=p.update_prob_decay,
                                              flat_start=p.update_prob_flat_steps)
    hidden = Kron(_hidden(groups), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay,
                  pre_conditioner_update_probability=sched, max_size_triangular=p.max_size_triangular,
                  min_ndim_triangular=p.min_ndim_triangular)
    return {"hidden": hidden, **_side_adamw(groups, p)}


def _scion(groups, p) -> dict:
    from pytorch_optimizer import SCION
    from pytorch_optimizer.optimizer.scion import LMONorm

    pg = _hidden(groups, norm_type=LMONorm.SPECTRAL, scale=p.hidden_scale)
    if groups["embed"]:
        pg.append({"params": groups["embed"], "name": "embed", "norm_type": LMONorm.SIGN, "scale": p.embed_scale,
                   "lr": p.embed_lr})
    hidden = SCION(pg, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay, constraint=False)
    out = {"hidden": hidden}
    out.update(_side_adamw({**groups, "embed": []}, p))
    return out


def _shampoo(groups, p) -> dict:
    from pytorch_optimizer import ScalableShampoo
    from pytorch_optimizer.optimizer.utils.graft import LayerWiseGrafting

    graft = {"rmsprop": LayerWiseGrafting.RMSPROP, "adagrad": LayerWiseGrafting.ADAGRAD,
             "sgd": LayerWiseGrafting.SGD, "sqrtn": LayerWiseGrafting.SQRTN}
    if p.graft not in graft:
        raise ConfigError("graft", f"unknown grafting {p.graft!r}", f"use one of {', '.join(graft)}")
    hidden = ScalableShampoo(
        _hidden(groups), lr=p.lr, betas=p.betas, weight_decay=p.weight_decay, decoupled_weight_decay=True,
        start_preconditioning_step=p.start_preconditioning_step, preconditioning_compute_steps=p.precondition_frequency,
        statistics_compute_steps=1, block_size=p.max_preconditioner_dim,
        no_preconditioning_for_layers_with_dim_gt=p.max_preconditioner_dim, graft_type=graft[p.graft],
        nesterov=False, diagonal_eps=p.diagonal_eps, matrix_eps=p.matrix_eps,
    )
    return {"hidden": hidden, **_side_adamw(groups, p)}


def _soap(groups, p) -> dict:
    from pytorch_optimizer import SOAP

    hidden = SOAP(_hidden(groups), lr=p.lr, betas=p.betas, eps=p.eps, weight_decay=p.weight_decay,
                  precondition_frequency=p.precondition_frequency, max_precondition_dim=p.max_precondition_dim,
                  precondition_1d=p.precondition_1d, correct_bias=p.correct_bias)
    return {"hidden": hidden, **_side_adamw(groups, p)}


OPTIMIZERS: dict[str, Callable] = {
    "adamw": _adamw,
    "muon": _muon,
    "psgd": _psgd,
    "scion": _scion,
    "shampoo": _shampoo,
    "soap": _soap,
}


def optimizer_hparams(name: str, *, lr: float | None = None, **overrides) -> dict:
    """The resolved hyperparameters (JSON-serialisable); validates every override."""
    p = resolve_preset(name, lr=lr, **overrides)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(p).items()}


def build_optimizer(name: str, model: torch.nn.Module, *, lr: float | None = None,
                    weight_decay: float | None = None, **overrides) -> CombinedOptimizer:
    """The optimizer ``name`` over ``model``'s trainable parameters with the paper's routing."""
    if name not in OPTIMIZERS:
        raise ConfigError("optimizer", f"unknown optimizer {name!r}", f"use one of {', '.join(OPTIMIZERS)}")
    if weight_decay is not None:
        overrides["weight_decay"] = weight_decay
    preset = resolve_preset(name, lr=lr, **overrides)
    return CombinedOptimizer(OPTIMIZERS[name](route_parameters(model), preset))
