"""Builders: preset + routed parameters -> one combined optimizer. ``OPTIMIZERS`` is the table.

Each builder takes the routed groups (``route_parameters``), a validated preset and the ids of the
(in, out)-stored weights (``transposed_weights``), and returns
``{sub-optimizer name: library optimizer}``; ``build_optimizer`` wraps them in one
``CombinedOptimizer``. Every param group carries a ``"name"`` ("hidden", "embed", "gain").
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable

import torch

from ..errors import ConfigError
from .combined import CombinedOptimizer
from .distributed import gather_matrix_optimizers
from .presets import resolve_preset
from .routing import route_parameters, transposed_weights

__all__ = ["OPTIMIZERS", "build_optimizer", "optimizer_hparams"]

Groups = dict[str, list[torch.nn.Parameter]]


def _side_groups(groups: Groups, embed_lr: float, gain_lr: float, weight_decay: float,
                 keys=("embed", "gain")) -> list[dict]:
    # The authors' code (ant) passes the same weight decay to every optimizer it builds, side ones included.
    lrs = {"embed": embed_lr, "gain": gain_lr}
    return [{"params": groups[k], "lr": lrs[k], "name": k, "weight_decay": weight_decay} for k in keys if groups[k]]


def _side_adamw(groups: Groups, p, keys=("embed", "gain")) -> dict:
    """The embedding/head and gain groups under AdamW with the preset's side settings."""
    embed_lr, gain_lr = p.side_lrs() if hasattr(p, "side_lrs") else (p.embed_lr, p.gain_lr)
    pg = _side_groups(groups, embed_lr, gain_lr, p.weight_decay, keys)
    if not pg:
        return {}
    return {"side": torch.optim.AdamW(pg, lr=pg[0]["lr"], betas=p.side_betas, eps=p.side_eps,
                                      weight_decay=p.weight_decay)}


def _hidden(groups: Groups, p) -> list[dict]:
    """The hidden group, plus the side groups when the optimizer under study takes them (ant's routing)."""
    pg = [{"params": groups["hidden"], "name": "hidden"}]
    if p.side_optimizer == "same":
        pg += _side_groups(groups, *p.side_lrs(), p.weight_decay)
    return pg


def _with_side(groups: Groups, p, hidden: torch.optim.Optimizer) -> dict:
    out = {"hidden": hidden}
    if p.side_optimizer == "adamw":
        out.update(_side_adamw(groups, p))
    return out


def _shape_ratio(q: torch.Tensor, transposed: frozenset) -> float:
    """rows / cols of the (out, in) matrix: Conv1D weights are stored (in, out)."""
    rows, cols = q.shape[:2]
    return cols / rows if id(q) in transposed else rows / cols


def _adamw(groups: Groups, p, transposed=frozenset()) -> dict:
    pg = [{"params": groups["hidden"], "name": "hidden"}]
    pg += _side_groups(groups, p.embed_lr or p.lr, p.gain_lr or p.lr, p.weight_decay)
    return {"hidden": torch.optim.AdamW(pg, lr=p.lr, betas=p.betas, eps=p.eps, weight_decay=p.weight_decay)}


def _muon(groups: Groups, p, transposed=frozenset()) -> dict:
    matrices = [q for q in groups["hidden"] if q.dim() == 2]
    others = [q for q in groups["hidden"] if q.dim() != 2]  # e.g. conv kernels: Muon takes 2-D only
    pg = [{"params": [q for q in matrices if id(q) not in transposed], "name": "hidden"}]
    if p.adjust_lr_fn == "original":
        # torch's Muon scales by sqrt(max(1, shape[0] / shape[1])); for an (in, out) weight the group lr
        # carries the ratio of the (out, in) scale to that one, and the weight decay is divided by it so
        # that lr x weight_decay (torch applies decay with the group lr) is unchanged.
        by_factor = defaultdict(list)
        for q in matrices:
            if id(q) in transposed:
                r = _shape_ratio(q, transposed)
                by_factor[math.sqrt(max(1.0, r)) / math.sqrt(max(1.0, 1.0 / r))].append(q)
        pg += [{"params": qs, "name": "hidden", "lr": p.lr * f, "weight_decay": p.weight_decay / f}
               for f, qs in by_factor.items()]
    else:  # 'match_rms_adamw' uses max(rows, cols): symmetric
        pg[0]["params"] += [q for q in matrices if id(q) in transposed]
    pg = [g for g in pg if g["params"]]
    hidden = torch.optim.Muon(pg, lr=p.lr, weight_decay=p.weight_decay, momentum=p.momentum, nesterov=p.nesterov,
                              ns_coefficients=p.ns_coefficients, ns_steps=p.ns_steps, adjust_lr_fn=p.adjust_lr_fn)
    return {"hidden": hidden, **_side_adamw({**groups, "gain": groups["gain"] + others}, p)}


def _psgd(groups: Groups, p, transposed=frozenset()) -> dict:
    from pytorch_optimizer import Kron
    from pytorch_optimizer.optimizer.psgd import precondition_update_prob_schedule

    sched = precondition_update_prob_schedule(max_prob=1.0, min_prob=p.update_prob_min, decay=p.update_prob_decay,
                                              flat_start=p.update_prob_flat_steps)
    hidden = Kron(_hidden(groups, p), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay,
                  pre_conditioner_update_probability=sched, max_size_triangular=p.max_size_triangular,
                  min_ndim_triangular=p.min_ndim_triangular, balance_prob=p.balance_prob)
    return _with_side(groups, p, hidden)


def _scion(groups: Groups, p, transposed=frozenset()) -> dict:
    from pytorch_optimizer import SCION
    from pytorch_optimizer.optimizer.scion import LMONorm

    # Spectral LMO for hidden matrices (scaled by sqrt(d_out / d_in) of shape[0] / shape[1]: an (in, out)
    # weight gets the ratio in its group's radius), sign LMO for the embedding/head; gains under AdamW.
    pg = [{"params": [q for q in groups["hidden"] if id(q) not in transposed], "name": "hidden",
           "norm_type": LMONorm.SPECTRAL, "scale": p.hidden_scale}]
    by_scale = defaultdict(list)
    for q in groups["hidden"]:
        if id(q) in transposed:
            by_scale[p.hidden_scale * _shape_ratio(q, transposed)].append(q)
    pg += [{"params": qs, "name": "hidden", "norm_type": LMONorm.SPECTRAL, "scale": s} for s, qs in by_scale.items()]
    pg = [g for g in pg if g["params"]]
    if groups["embed"]:
        pg.append({"params": groups["embed"], "name": "embed", "norm_type": LMONorm.SIGN, "scale": p.embed_scale,
                   "lr": p.embed_lr, "weight_decay": p.weight_decay})
    hidden = SCION(pg, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay, constraint=False)
    return {"hidden": hidden, **_side_adamw(groups, p, keys=("gain",))}


def _shampoo(groups: Groups, p, transposed=frozenset()) -> dict:
    from .shampoo import Shampoo

    hidden = Shampoo(
        _hidden(groups, p), lr=p.lr, betas=p.betas, epsilon=p.epsilon, momentum=p.momentum,
        weight_decay=p.weight_decay, max_preconditioner_dim=p.max_preconditioner_dim,
        precondition_frequency=p.precondition_frequency, start_preconditioning_step=p.start_preconditioning_step,
        use_nesterov=p.nesterov, use_bias_correction=p.bias_correction, use_decoupled_weight_decay=True,
        grafting=p.grafting, grafting_beta2=p.betas[1] if p.grafting_beta2 is None else p.grafting_beta2,
        grafting_epsilon=p.epsilon if p.grafting_epsilon is None else p.grafting_epsilon,
        merge_small_dims=p.merge_small_dims,
    )
    return _with_side(groups, p, hidden)


def _soap(groups: Groups, p, transposed=frozenset()) -> dict:
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
    built = OPTIMIZERS[name](route_parameters(model), preset, transposed=frozenset(transposed_weights(model)))
    return CombinedOptimizer(gather_matrix_optimizers(name, built))
