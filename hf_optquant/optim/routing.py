"""The paper's parameter routing: hidden matrices get the optimizer under study;
the (tied) embedding / LM head and every 1-D parameter get their own groups."""
from __future__ import annotations

import torch

from ..errors import ConfigError

__all__ = ["route_parameters"]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DDP / DataParallel wrappers (same parameter objects), which hide
    ``get_input_embeddings``."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def route_parameters(model: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """``{"hidden": [...], "embed": [...], "gain": [...]}`` of the trainable parameters.

    Works for any HF causal LM (embedding and head found through ``get_input_embeddings`` /
    ``get_output_embeddings``; a tied pair counted once) and for peft models, whose frozen
    base weights are skipped and whose LoRA A/B matrices are hidden matrices.
    """
    model = _unwrap(model)
    special: set[int] = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        fn = getattr(model, getter, None)
        mod = fn() if callable(fn) else None
        if mod is not None and getattr(mod, "weight", None) is not None:
            special.add(id(mod.weight))
    groups: dict[str, list[torch.nn.Parameter]] = {"hidden": [], "embed": [], "gain": []}
    seen: set[int] = set()
    for _, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in special:
            groups["embed"].append(p)
        elif p.dim() >= 2:
            groups["hidden"].append(p)
        else:
            groups["gain"].append(p)
    if not groups["hidden"]:
        raise ConfigError(
            "model",
            "has no trainable 2-D hidden parameters for the optimizer under study",
            "train a model with linear layers (a transformer), or unfreeze its weight matrices",
        )
    return groups
