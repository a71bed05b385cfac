"""Activations at a decoder block's input: what GPTQ calibrates on and what the ABC diagnosis feeds block by block.

A forward pre-hook records the ``(args, kwargs)`` the model passes to a block and stops the forward there,
so only the embedding (and nothing after the block) runs.
"""
from __future__ import annotations

import torch

__all__ = ["capture_block_inputs", "hidden_of", "with_hidden"]


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
