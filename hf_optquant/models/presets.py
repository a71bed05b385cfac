"""Size presets on the stock ``Olmo2ForCausalLM`` architecture.

Why OLMo2: it is the stock ``transformers`` (and vLLM) architecture closest to the
paper's model: RMSNorm applied to each sublayer's output before the residual add,
QK-norm, no biases, tied embeddings, RoPE. Deviations (listed in docs/models.md):
QK-norm is OLMo2's RMSNorm over the whole q/k projection instead of a per-head L2
norm with a learned logit scale; the MLP is gated (``down(act(gate x) * up x)``) with
``hidden_act="relu2"`` and width 8d/3 so that it has the parameter count of the paper's
non-gated d -> 4d -> d ReLU^2 MLP.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, Olmo2Config, PreTrainedModel

from ..errors import ConfigError

__all__ = ["ModelPreset", "SIZE_PRESETS", "model_config", "build_model", "meta_model", "count_parameters"]


@dataclass(frozen=True, kw_only=True)
class ModelPreset:
    hidden_size: int
    num_layers: int
    head_dim: int = 64
    intermediate_size: int | None = None
    vocab_size: int = 32000
    max_position_embeddings: int = 1024

    @property
    def heads(self) -> int:
        return self.hidden_size // self.head_dim

    @property
    def mlp_width(self) -> int:
        if self.intermediate_size:
            return self.intermediate_size
        # 8d/3 rounded up to a multiple of 64 (keeps Hadamard blocks and GPTQ groups dividing).
        return -(-(8 * self.hidden_size // 3) // 64) * 64


# Paper sizes: shapes are GPT-style (the paper does not publish them: see docs/method.md section 10).
SIZE_PRESETS: dict[str, ModelPreset] = {
    "50M": ModelPreset(hidden_size=512, num_layers=8),
    "125M": ModelPreset(hidden_size=768, num_layers=12),
    # Every paper size keeps hidden and MLP widths divisible by 128, so QuEST's 128-wide Hadamard blocks (the
    # paper's) and GPTQ's group:128 divide every linear: 350M's MLP is 8d/3 rounded up to 128 (2816, not
    # 2752), and 1.5B is 36 x 1792 (1.46B with a 32k vocabulary) instead of GPT-2 XL's 48 x 1600 (1600 = 64 x 25).
    "350M": ModelPreset(hidden_size=1024, num_layers=24, intermediate_size=2816),
    "500M": ModelPreset(hidden_size=1280, num_layers=24),
    "760M": ModelPreset(hidden_size=1536, num_layers=24),
    "1.5B": ModelPreset(hidden_size=1792, num_layers=36, head_dim=64, intermediate_size=4864),
    # Tiny CPU sizes (~0.1M-2M parameters with a 2k-token vocabulary). tiny-1..4 differ only in depth so
    # that the embedded study's four sizes train in minutes on 2 CPU cores.
    "tiny-1": ModelPreset(hidden_size=64, num_layers=1, head_dim=32, vocab_size=2048, max_position_embeddings=256),
    "tiny-2": ModelPreset(hidden_size=64, num_layers=2, head_dim=32, vocab_size=2048, max_position_embeddings=256),
    "tiny-3": ModelPreset(hidden_size=64, num_layers=3, head_dim=32, vocab_size=2048, max_position_embeddings=256),
    "tiny-4": ModelPreset(hidden_size=64, num_layers=4, head_dim=32, vocab_size=2048, max_position_embeddings=256),
    "tiny-5": ModelPreset(hidden_size=128, num_layers=2, head_dim=32, vocab_size=2048, max_position_embeddings=256),
    "tiny-6": ModelPreset(hidden_size=128, num_layers=4, head_dim=32, vocab_size=2048, max_position_embeddings=256),
    "tiny-7": ModelPreset(hidden_size=192, num_layers=4, head_dim=32, vocab_size=2048, max_position_embeddings=256),
}


def model_config(size: str, *, vocab_size: int | None = None, max_position_embeddings: int | None = None,
                 **overrides) -> Olmo2Config:
    """An ``Olmo2Config`` for a preset name; ``vocab_size`` usually comes from the tokenizer."""
    if size not in SIZE_PRESETS:
        raise ConfigError("model_size", f"unknown size {size!r}", f"use one of {', '.join(SIZE_PRESETS)}")
    p = SIZE_PRESETS[size]
    kwargs = dict(
        vocab_size=vocab_size or p.vocab_size,
        hidden_size=p.hidden_size,
        intermediate_size=p.mlp_width,
        num_hidden_layers=p.num_layers,
        num_attention_heads=p.heads,
        num_key_value_heads=p.heads,
        hidden_act="relu2",
        max_position_embeddings=max_position_embeddings or p.max_position_embeddings,
        tie_word_embeddings=True,
        attention_bias=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1024.0},
        initializer_range=0.02,
        rms_norm_eps=1e-6,
        pad_token_id=None,
        bos_token_id=None,
        eos_token_id=None,
    )
    kwargs.update(overrides)
    return Olmo2Config(**kwargs)


def build_model(size_or_path: str, *, vocab_size: int | None = None, seed: int | None = None,
                **overrides) -> PreTrainedModel:
    """A fresh model for a preset name, or ``from_pretrained`` for a local dir / Hub id.

    Any Hugging Face causal LM works with the rest of hf_optquant; presets are a convenience.
    """
    if size_or_path in SIZE_PRESETS:
        if seed is not None:
            torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(model_config(size_or_path, vocab_size=vocab_size, **overrides))
    try:
        return AutoModelForCausalLM.from_pretrained(size_or_path, **overrides)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            "model",
            f"{size_or_path!r} is neither a size preset nor a loadable causal LM ({type(exc).__name__}: {str(exc).splitlines()[0]})",
            f"use a preset ({', '.join(SIZE_PRESETS)}), a local model dir or a Hub id",
        ) from None



def meta_model(size: str, *, vocab_size: int | None = None) -> PreTrainedModel:
    """A preset's model on the meta device: shapes and parameter counts without memory (load-time checks, plans)."""
    with torch.device("meta"):
        return build_model(size, vocab_size=vocab_size)


def count_parameters(model: torch.nn.Module, *, non_embedding: bool = False) -> int:
    """Unique parameters (tied weights counted once); optionally without the embedding."""
    seen, total = set(), 0
    emb = model.get_input_embeddings().weight if hasattr(model, "get_input_embeddings") else None
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if non_embedding and emb is not None and p is emb:
            continue
        total += p.numel()
    return total
