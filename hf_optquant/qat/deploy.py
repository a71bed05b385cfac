"""QuEST checkpoints that keep the Hadamard rotation, and the loader that runs them exactly.

QuEST computes ``y = Q_a(x H) Q_w(W H)^T + b`` with ``H`` the block-diagonal normalised
Hadamard. The checkpoint stores that product's pieces as compressed-tensors describes them:

* the weight **in the rotated basis**, ``Q_w(W H)``, losslessly: QuEST's midrise levels
  ``(k + 1/2) step`` are 4-bit codes ``k`` with a per-row (or group) ``scale = step`` and
  ``zero_point = -1/2`` (an asymmetric int scheme with a float zero point, ``int-quantized``
  storage: one int8 per code). A symmetric integer grid cannot hold midrise levels at the
  same bit width, which is why the zero point is there;
* the rotation of the activations in ``transform_config`` (``type: hadamard``,
  ``head_dim`` = the block, ``location: input``, online), next to the ``weight_input``
  rotation already fused into the stored weight, as llm-compressor writes rotations and vLLM
  reads them;
* activations: ``input_activations`` declares the nearest compressed-tensors scheme (dynamic
  per-token symmetric int), because compressed-tensors has no RMS-clipped midrise grid.

``load_quest(path)`` rebuilds QuEST's forward from that: weights as stored (decompressed
exactly), each targeted linear rotating its input online and quantizing it with QuEST's
activation quantizer (``c(b) x RMS`` midrise, from ``quantization_record.json``). Plain
``AutoModelForCausalLM.from_pretrained`` (transformers 5.24) ignores ``transform_config``:
it multiplies unrotated activations with rotated weights, which is a different function
(docs/qat.md reports its loss); ``load_quest(path, activations="compressed-tensors")``
applies the online rotation with compressed-tensors' own transform code and keeps its
per-token absmax activations, which is what a transform-aware runtime computes.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..quant import parse_granularity
from ..quant.scheme import parse_bits
from .hadamard import block_hadamard, hadamard_matrix, is_power_of_two
from .numerics import quest_fake_quant

__all__ = ["QuestLinear", "quest_weight_codes", "quest_transform_config", "load_quest", "online_rotations"]

TRANSFORM_GROUP = "quest_hadamard"


def quest_weight_codes(weight: torch.Tensor, bits: int, gran, block: int,
                       h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """QuEST's quantized ``W H`` as (codes in [-2^(b-1), 2^(b-1)-1], steps (rows, n_groups)):
    ``Q(W H) = (codes + 1/2) * step``. Computed in the weight's dtype through the same
    operations as the training forward, so the stored levels are the ones QAT used."""
    gran = parse_granularity(gran)
    with torch.no_grad():
        w = weight.detach()
        q, _, scale = quest_fake_quant(block_hadamard(w, block, h), bits, gran)
        step = scale * (2.0 / (2**bits - 1))
        rows = 1 if gran.kind == "tensor" else w.shape[0]
        step = step.reshape(rows, -1)
        n_groups = step.shape[1]
        g = q.reshape(rows, n_groups, -1) / step.unsqueeze(-1)
        codes = torch.round(g - 0.5).clamp_(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return codes.reshape(w.shape).to(torch.int8), step.float()


def quest_transform_config(targets: list[str], block: int):
    """compressed-tensors ``TransformConfig``: block Hadamard fused into the stored weights and applied
    online to the targets' inputs (``H`` symmetric orthogonal, so the inverse is ``H`` itself)."""
    from compressed_tensors.transform import (
        TransformArgs,
        TransformConfig,
        TransformScheme,
    )

    scheme = TransformScheme(type="hadamard", head_dim=block, apply=[
        TransformArgs(targets=list(targets), location="weight_input", inverse=True),
        TransformArgs(targets=list(targets), location="input"),
    ])
    return TransformConfig(config_groups={TRANSFORM_GROUP: scheme})


class QuestLinear(nn.Linear):
    """Deployed QuEST layer: ``weight`` is ``Q_w(W H)`` (rotated basis, already quantized);
    the input is rotated online and, with ``a_bits``, quantized by QuEST's activation quantizer."""

    def __init__(self, linear: nn.Linear, *, block: int, a_bits: int | None):
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.block, self.a_bits = block, a_bits
        self.register_buffer("hadamard", hadamard_matrix(block, dtype=linear.weight.dtype,
                                                         device=linear.weight.device), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xr = block_hadamard(x, self.block, self.hadamard)
        if self.a_bits is not None:
            xr = quest_fake_quant(xr, self.a_bits, "row")[0].to(x.dtype)
        return F.linear(xr, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, block={self.block}, a_bits={self.a_bits}"


def online_rotations(config: dict) -> tuple[list[str], int]:
    """(target module names, block) of the online Hadamard in a checkpoint's ``config.json`` dict."""
    tcfg = (config.get("quantization_config") or {}).get("transform_config") or {}
    group = (tcfg.get("config_groups") or {}).get(TRANSFORM_GROUP)
    if not isinstance(group, dict):
        raise ConfigError("transform_config", f"config.json has no {TRANSFORM_GROUP!r} transform group",
                          "load a checkpoint written by hf_optquant.qat.convert_qat with quantizer quest")
    block = group.get("head_dim")
    targets = [t for a in group.get("apply", []) if isinstance(a, dict) and a.get("location") == "input"
               for t in a.get("targets", [])]
    if group.get("type") != "hadamard" or not is_power_of_two(block) or not targets \
            or not all(isinstance(t, str) for t in targets):
        raise ConfigError("transform_config", f"{TRANSFORM_GROUP!r} is not a block Hadamard on module inputs",
                          "re-export the checkpoint with hf_optquant.qat.convert_qat")
    return targets, block


def _read_json(path: Path, field: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(field, f"cannot read {path} ({type(exc).__name__})", "give a QuEST checkpoint dir") from None
    if not isinstance(data, dict):
        raise ConfigError(field, f"{path} is not a JSON object", "give a QuEST checkpoint dir")
    return data


def load_quest(path, *, activations: str = "quest", **from_pretrained_kwargs) -> nn.Module:
    """Load a QuEST checkpoint (``convert_qat`` with ``quantizer: quest``) and run QuEST's forward.

    ``activations="quest"`` (default): each targeted linear computes ``Q_a(x H) W_q^T + b`` with the
    stored ``W_q = Q_w(W H)`` and QuEST's activation quantizer; this equals the QAT model's forward.
    ``activations="compressed-tensors"``: compressed-tensors' own quantized model with its transforms
    applied (online Hadamard, then per-token absmax int activations), what a transform-aware runtime
    such as vLLM computes.
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import CompressedTensorsConfig

    path = Path(path)
    if activations not in ("quest", "compressed-tensors"):
        raise ConfigError("activations", f"unknown value {activations!r}", "use quest or compressed-tensors")
    rec = _read_json(path / "quantization_record.json", "quantization_record.json")
    if rec.get("method") != "quest-qat":
        raise ConfigError("quantization_record.json", f"method is {rec.get('method')!r}, not 'quest-qat'",
                          "load other checkpoints with AutoModelForCausalLM.from_pretrained")
    targets, block = online_rotations(_read_json(path / "config.json", "config.json"))
    a_bits = parse_bits(rec.get("a_bits"), "quantization_record.json: a_bits")
    if activations == "compressed-tensors":
        from compressed_tensors.transform import TransformConfig, apply_transform_config

        model = AutoModelForCausalLM.from_pretrained(path, **from_pretrained_kwargs)
        online = quest_transform_config(targets, block)
        online.config_groups[TRANSFORM_GROUP].apply = [a for a in online.config_groups[TRANSFORM_GROUP].apply
                                                       if a.location == "input"]  # weights are stored rotated
        apply_transform_config(model, TransformConfig.model_validate(online.model_dump()))
        return model
    # dequantize=True: plain Linear layers holding the decompressed (exact) weights, no activation hooks.
    with warnings.catch_warnings():  # "quantization_config from the model will be used": dequantize is what we set
        warnings.filterwarnings("ignore", message="You passed `quantization_config`")
        model = AutoModelForCausalLM.from_pretrained(
            path, quantization_config=CompressedTensorsConfig(dequantize=True), **from_pretrained_kwargs)
    modules = dict(model.named_modules())
    for name in targets:
        lin = modules.get(name)
        if not isinstance(lin, nn.Linear):
            raise ConfigError("transform_config", f"target {name!r} is not a linear layer of the loaded model",
                              "re-export the checkpoint with hf_optquant.qat.convert_qat")
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, QuestLinear(lin, block=block, a_bits=a_bits))
    return model
