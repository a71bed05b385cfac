"""The paper's parameter routing: hidden matrices get the optimizer under study;
the (tied) embedding / LM head, learned position embeddings and every 1-D parameter get their own groups.

``transposed_weights`` names the matrices stored as (in, out) (GPT-2's ``Conv1D``), whose shape
rules (Muon's sqrt(max(1, rows/cols)), Scion's sqrt(d_out/d_in)) must use the (out, in) shape."""
from __future__ import annotations

import torch

from ..errors import ConfigError

__all__ = ["route_parameters", "transposed_weights"]


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
    ``get_output_embeddings``; a tied pair counted once; every other ``nn.Embedding``, such as GPT-2's
    ``wpe`` or OPT's ``embed_positions``, joins them as in the authors' code) and for peft models, whose frozen
    base weights are skipped and whose LoRA A/B matrices are hidden matrices.
    """
    model = _unwrap(model)
    special: set[int] = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        fn = getattr(model, getter, None)
        mod = fn() if callable(fn) else None
        if mod is not None and getattr(mod, "weight", None) is not None:
            special.add(id(mod.weight))
    for mod in model.modules():
        if isinstance(mod, torch.nn.Embedding):  # learned position (or token-type) embeddings
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


def transposed_weights(model: torch.nn.Module) -> set[int]:
    """``id``s of the trainable weights stored as (in, out): transformers' ``Conv1D`` (GPT-2 family),
    also when QAT wrapped it (``QATLinear`` keeps the Conv1D's Parameter and layout)."""
    from ..models.anatomy import weight_is_in_out

    return {id(m.weight) for m in _unwrap(model).modules() if weight_is_in_out(m) and m.weight.requires_grad}
