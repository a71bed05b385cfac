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

from ..models.anatomy import FINAL_NORM_PATHS, decoder_blocks
from .actquant import attach_activation_quant
from .gptq import hessian_update

__all__ = ["FINAL_NORM_PATHS", "decoder_blocks", "capture_block_inputs", "hidden_of", "with_hidden", "collect_hessians",
           "sequential_quantize"]

class _Captured(Exception):
    """Raised by the capture hook to stop the forward once block 0's input is recorded."""


@torch.no_grad()
def capture_block_inputs(model: torch.nn.Module, block: torch.nn.Module, calibration: torch.Tensor,
                         batch_size: int) -> list[tuple[tuple, dict]]:
    """The ``(args, kwargs)`` each calibration batch passes to ``block`` (block 0)."""
    captured: list[tuple[tuple, dict]] = []

    def hook(module, args, kwargs):
        captured.append((args, kwargs))
        raise _Captured

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for i in range(0, calibration.shape[0], batch_size):
            try:
                model(input_ids=calibration[i:i + batch_size], use_cache=False)
            except _Captured:
                pass
    finally:
        handle.remove()
    return captured


def hidden_of(args: tuple, kwargs: dict) -> torch.Tensor:
    """The hidden state a block (or layer) was called with: first positional argument or ``hidden_states``."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    return kwargs["hidden_states"]


def with_hidden(args: tuple, kwargs: dict, h: torch.Tensor) -> tuple[tuple, dict]:
    """The same call with the hidden state replaced by ``h``."""
    if args and isinstance(args[0], torch.Tensor):
        return (h, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": h}


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
