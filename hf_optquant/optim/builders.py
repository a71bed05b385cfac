"""Builders: preset + routed parameters -> one combined optimizer. ``OPTIMIZERS`` is the table.

Each builder takes the routed groups (``route_parameters``) and a validated preset and returns
``{sub-optimizer name: library optimizer}``; ``build_optimizer`` wraps them in one
``CombinedOptimizer``. Every param group carries a ``"name"`` ("hidden", "embed", "gain").
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from ..errors import ConfigError
from .combined import CombinedOptimizer
from .distributed import gather_matrix_optimizers
from .presets import resolve_preset
from .routing import route_parameters

__all__ = ["OPTIMIZERS", "build_optimizer", "optimizer_hparams"]

Groups = dict[str, list[torch.nn.Parameter]]


def _side_groups(groups: Groups, embed_lr: float, gain_lr: float, keys=("embed", "gain")) -> list[dict]:
    # Embedding/head and gains never get weight decay (as in the paper's code).
    lrs = {"embed": embed_lr, "gain": gain_lr}
    return [{"params": groups[k], "lr": lrs[k], "name": k, "weight_decay": 0.0} for k in keys if groups[k]]


def _side_adamw(groups: Groups, p, keys=("embed", "gain")) -> dict:
    """The embedding/head and gain groups under AdamW with the preset's side settings."""
    pg = _side_groups(groups, p.embed_lr, p.gain_lr, keys)
    if not pg:
        return {}
    return {"side": torch.optim.AdamW(pg, lr=pg[0]["lr"], betas=p.side_betas, eps=p.side_eps, weight_decay=0.0)}


def _hidden(groups: Groups, p) -> list[dict]:
    """The hidden group, plus the side groups when the preset asks the optimizer under study to take them."""
    pg = [{"params": groups["hidden"], "name": "hidden"}]
    if getattr(p, "side_optimizer", "adamw") == "same":
        pg += _side_groups(groups, p.embed_lr, p.gain_lr)
    return pg


def _with_side(groups: Groups, p, hidden: torch.optim.Optimizer) -> dict:
    out = {"hidden": hidden}
    if getattr(p, "side_optimizer", "adamw") == "adamw":
        out.update(_side_adamw(groups, p))
    return out


def _adamw(groups: Groups, p) -> dict:
    pg = [{"params": groups["hidden"], "name": "hidden"}]
    pg += _side_groups(groups, p.embed_lr or p.lr, p.gain_lr or p.lr)
    return {"hidden": torch.optim.AdamW(pg, lr=p.lr, betas=p.betas, eps=p.eps, weight_decay=p.weight_decay)}


def _muon(groups: Groups, p) -> dict:
    matrices = [q for q in groups["hidden"] if q.dim() == 2]
    others = [q for q in groups["hidden"] if q.dim() != 2]  # e.g. conv kernels: Muon takes 2-D only
    hidden = torch.optim.Muon([{"params": matrices, "name": "hidden"}], lr=p.lr, weight_decay=p.weight_decay,
                              momentum=p.momentum, nesterov=p.nesterov, ns_coefficients=p.ns_coefficients,
                              ns_steps=p.ns_steps, adjust_lr_fn=p.adjust_lr_fn)
    return {"hidden": hidden, **_side_adamw({**groups, "gain": groups["gain"] + others}, p)}


def _psgd(groups: Groups, p) -> dict:
    from pytorch_optimizer import Kron
    from pytorch_optimizer.optimizer.psgd import precondition_update_prob_schedule

    sched = precondition_update_prob_schedule(max_prob=1.0, min_prob=p.update_prob_min, decay=p.update_prob_decay,
                                              flat_start=p.update_prob_flat_steps)
    hidden = Kron(_hidden(groups, p), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay,
                  pre_conditioner_update_probability=sched, max_size_triangular=p.max_size_triangular,
                  min_ndim_triangular=p.min_ndim_triangular, balance_prob=p.balance_prob)
    return _with_side(groups, p, hidden)


def _scion(groups: Groups, p) -> dict:
    from pytorch_optimizer import SCION
    from pytorch_optimizer.optimizer.scion import LMONorm

    # Spectral LMO for hidden matrices, sign LMO for the embedding/head; gains under AdamW.
    pg = [{"params": groups["hidden"], "name": "hidden", "norm_type": LMONorm.SPECTRAL, "scale": p.hidden_scale}]
    if groups["embed"]:
        pg.append({"params": groups["embed"], "name": "embed", "norm_type": LMONorm.SIGN, "scale": p.embed_scale,
                   "lr": p.embed_lr, "weight_decay": 0.0})
    hidden = SCION(pg, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay, constraint=False)
    return {"hidden": hidden, **_side_adamw(groups, p, keys=("gain",))}


def _shampoo(groups: Groups, p) -> dict:
    from pytorch_optimizer import ScalableShampoo
    from pytorch_optimizer.optimizer.utils.graft import LayerWiseGrafting

    hidden = ScalableShampoo(
        _hidden(groups, p), lr=p.lr, betas=p.betas, moving_average_for_momentum=p.moving_average_for_momentum,
        weight_decay=p.weight_decay, decoupled_weight_decay=True,
        start_preconditioning_step=p.start_preconditioning_step, preconditioning_compute_steps=p.precondition_frequency,
        statistics_compute_steps=1, block_size=p.max_preconditioner_dim,
        no_preconditioning_for_layers_with_dim_gt=p.max_preconditioner_dim,
        graft_type=getattr(LayerWiseGrafting, p.graft.upper()), nesterov=p.nesterov,
        diagonal_eps=p.diagonal_eps, matrix_eps=p.matrix_eps,
    )
    return _with_side(groups, p, hidden)


def _soap(groups: Groups, p) -> dict:
    from pytorch_optimizer import SOAP

    hidden = SOAP(_hidden(groups, p), lr=p.lr, betas=p.betas, eps=p.eps, weight_decay=p.weight_decay,
                  precondition_frequency=p.precondition_frequency, max_precondition_dim=p.max_precondition_dim,
                  precondition_1d=p.precondition_1d, correct_bias=p.correct_bias)
    return _with_side(groups, p, hidden)


OPTIMIZERS: dict[str, Callable[[Groups, object], dict[str, torch.optim.Optimizer]]] = {
    "adamw": _adamw,
    "muon": _muon,
    "psgd": _psgd,
    "scion": _scion,
    "shampoo": _shampoo,
    "soap": _soap,
}


def optimizer_hparams(name: str, *, lr: float | None = None, **overrides) -> dict:
    """The resolved hyperparameters of optimizer ``name`` (JSON-serialisable); validates every override."""
    p = resolve_preset(name, lr=lr, **overrides)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(p).items()}


def build_optimizer(name: str, model: torch.nn.Module, *, lr: float | None = None,
                    weight_decay: float | None = None, **overrides) -> CombinedOptimizer:
    """The optimizer ``name`` over ``model``'s trainable parameters with the paper's routing.

    ``lr=None`` uses the preset's lr; ``overrides`` are preset fields (see ``optimizer_hparams``).
    """
    if name not in OPTIMIZERS:
        raise ConfigError("optimizer", f"unknown optimizer {name!r}", f"use one of {', '.join(OPTIMIZERS)}")
    if weight_decay is not None:
        overrides["weight_decay"] = weight_decay
    preset = resolve_preset(name, lr=lr, **overrides)
    # Under FSDP2 the matrix methods step whole matrices (optim/distributed.py); one process: unchanged.
    return CombinedOptimizer(gather_matrix_optimizers(name, OPTIMIZERS[name](route_parameters(model), preset)))
