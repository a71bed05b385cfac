"""GPT-2 as the same function with ``nn.Linear`` layers, for compressed-tensors export.

compressed-tensors quantizes ``nn.Linear`` (and embeddings) only: ``apply_quantization_config``
passes over transformers' ``Conv1D``, so a quantized GPT-2 checkpoint could not be loaded by
plain ``from_pretrained`` (its Conv1D layers would find no place for the codes and scales).
transformers' GPTBigCode is GPT-2's architecture with ``nn.Linear`` layers (same module names,
learned positions, LayerNorm, MLP); with ``multi_query=False`` it is multi-head attention whose
fused qkv projection orders its output rows per head ``[q_h, k_h, v_h]`` where GPT-2 has
``[q | k | v]``. :func:`gpt2_as_bigcode` builds that model from a GPT-2 one with the rows
permuted (the tests check equal logits); row-wise quantization commutes with the permutation,
so codes and scales are permuted the same way by :func:`permute_qweights`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .anatomy import is_conv1d, weight_out_in

__all__ = ["gpt2_as_bigcode", "qkv_row_permutation", "permute_qweights", "needs_linearizing"]


def needs_linearizing(model: nn.Module) -> bool:
    """GPT-2 (also after ``conv1d_to_linear``) or any model with Conv1D layers."""
    return getattr(getattr(model, "config", None), "model_type", None) == "gpt2" or \
        any(is_conv1d(m) for m in model.modules())


def qkv_row_permutation(n_embd: int, n_head: int) -> torch.Tensor:
    """Row ``i`` of the GPTBigCode c_attn is row ``perm[i]`` of GPT-2's."""
    d = n_embd // n_head
    return torch.cat([torch.cat([h * d + torch.arange(d), n_embd + h * d + torch.arange(d),
                                 2 * n_embd + h * d + torch.arange(d)]) for h in range(n_head)])


def _check_gpt2(model: nn.Module):
    cfg = getattr(model, "config", None)
    if getattr(cfg, "model_type", None) != "gpt2":
        raise ConfigError("model", f"has transformers Conv1D layers but is a {getattr(cfg, 'model_type', '?')!r} "
                          "model; only GPT-2 is converted to nn.Linear for compressed-tensors",
                          "export a GPT-2 or an nn.Linear-based model")
    for key in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if getattr(cfg, key, False):
            raise ConfigError("model", f"GPT-2 with {key}=True has no GPTBigCode equivalent",
                              f"export a model trained with {key}=False")
    if not getattr(cfg, "scale_attn_weights", True):
        raise ConfigError("model", "GPT-2 with scale_attn_weights=False is not supported for export",
                          "export a model with the default scale_attn_weights=True")
    return cfg


def gpt2_as_bigcode(model: nn.Module) -> nn.Module:
    """A ``GPTBigCodeForCausalLM`` (multi-head) computing what the GPT-2 ``model`` computes."""
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    cfg = _check_gpt2(model)
    bc = GPTBigCodeConfig(
        vocab_size=cfg.vocab_size, n_positions=cfg.n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=cfg.n_inner, activation_function=cfg.activation_function,
        resid_pdrop=cfg.resid_pdrop, embd_pdrop=cfg.embd_pdrop, attn_pdrop=cfg.attn_pdrop,
        layer_norm_epsilon=cfg.layer_norm_epsilon, initializer_range=cfg.initializer_range,
        scale_attn_weights=True, multi_query=False, bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id,
        tie_word_embeddings=getattr(cfg, "tie_word_embeddings", True), dtype=getattr(cfg, "dtype", None))
    perm = qkv_row_permutation(cfg.n_embd, cfg.n_head)
    sd = dict(model.state_dict())
    for name, module in model.named_modules():
        if is_conv1d(module) or isinstance(module, nn.Linear):
            w = weight_out_in(module).detach()
            b = module.bias.detach() if module.bias is not None else None
            if name.endswith("attn.c_attn"):
                w, b = w[perm], b[perm]
            sd[f"{name}.weight"] = w.contiguous()
            if b is not None:
                sd[f"{name}.bias"] = b
    out = GPTBigCodeForCausalLM(bc).to(next(model.parameters()).dtype)
    missing, _ = out.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing:
        raise ConfigError("model", f"GPT-2 -> GPTBigCode left weights unset: {missing[:3]}", "report this model")
    if not bc.tie_word_embeddings:
        out.lm_head.weight.data.copy_(model.get_output_embeddings().weight.detach())
    return out.eval()


def permute_qweights(qweights: dict, n_embd: int, n_head: int) -> dict:
    """Codes/scales of GPT-2's c_attn rows in GPTBigCode's row order (other layers unchanged)."""
    perm = qkv_row_permutation(n_embd, n_head)
    out = {}
    for name, (q, s) in qweights.items():
        if name.endswith("attn.c_attn"):
            q = q[perm]
            s = s.reshape(q.shape[0], -1)[perm] if s.numel() > 1 else s
        out[name] = (q, s)
    return out
