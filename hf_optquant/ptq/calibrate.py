"""GPTQ's layer-by-layer calibration loop: hooks collect each linear's Hessian, block by block.

Decoder block ``l`` is calibrated on the outputs of blocks ``< l`` that are already
quantized (weights and, when ``a_bits`` is set, activations), as GPTQ prescribes, so each
layer corrects the error its predecessors introduced. Only block 0's inputs come from
the model's own forward; afterwards every block runs on its own, which keeps the cost
linear in depth. The math is in ``gptq.py``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from ..models.anatomy import decoder_blocks
from ..models.capture import capture_block_inputs, with_hidden
from .actquant import attach_activation_quant
from .gptq import hessian_update

__all__ = ["collect_hessians", "sequential_quantize"]


@torch.no_grad()
def collect_hessians(block: torch.nn.Module, linears: dict[str, torch.nn.Linear],
                     inputs: list[tuple[tuple, dict]]) -> dict[str, tuple[torch.Tensor, int]]:
    """Run ``block`` on ``inputs`` and accumulate ``(H, n_tokens)`` for each linear's input."""
    stats: dict[str, list] = {n: [None, 0] for n in linears}

    def make_hook(name):
        def hook(module, args):
            stats[name][0], stats[name][1] = hessian_update(stats[name][0], stats[name][1], args[0])
        return hook

    handles = [m.register_forward_pre_hook(make_hook(n)) for n, m in linears.items()]
    try:
        for args, kwargs in inputs:
            block(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return {n: (H, k) for n, (H, k) in stats.items()}


@torch.no_grad()
def sequential_quantize(model: torch.nn.Module, targets: dict[str, torch.nn.Linear], calibration: torch.Tensor,
                        quantize: Callable[[str, torch.nn.Linear, torch.Tensor], None], *,
                        a_bits: int | None = None, batch_size: int = 8) -> None:
    """Calibrate and quantize ``targets`` block by block; ``quantize(name, linear, H)`` does one layer.

    ``quantize`` must replace the linear's weight by its dequantized value. Linears outside the
    decoder blocks (an LM head) are calibrated last from a forward of the quantized model.
    """
    _, blocks = decoder_blocks(model)
    names = {id(m): n for n, m in model.named_modules()}
    by_block = [{names[id(m)]: m for m in block.modules() if names.get(id(m)) in targets} for block in blocks]
    inside = {n for group in by_block for n in group}
    rest = {n: m for n, m in targets.items() if n not in inside}

    model.eval()
    inputs = capture_block_inputs(model, blocks[0], calibration, batch_size)
    for block, linears in zip(tqdm(blocks, desc="GPTQ blocks", leave=False), by_block):
        if linears:
            for name, (H, _) in collect_hessians(block, linears, inputs).items():
                quantize(name, linears[name], H)
            attach_activation_quant(model, list(linears), a_bits)
        # The next block sees this block's quantized output.
        outs = []
        for args, kwargs in inputs:
            out = block(*args, **kwargs)
            outs.append(with_hidden(args, kwargs, out[0] if isinstance(out, tuple) else out))
        inputs = outs
    if rest:
        # Run the whole (already quantized) model as the "block" that feeds these linears.
        calls = [((), {"input_ids": calibration[i:i + batch_size], "use_cache": False})
                 for i in range(0, calibration.shape[0], batch_size)]
        for n, (H, _) in collect_hessians(model, rest, calls).items():
            quantize(n, rest[n], H)
        attach_activation_quant(model, list(rest), a_bits)
