"""Validation loss and perplexity on a held-out split."""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

__all__ = ["evaluate_loss"]


@torch.no_grad()
def evaluate_loss(model, tokenizer, *, dataset: str = "ptb", split: str = "validation", block_size: int = 128,
                  max_tokens: int | None = 65536, batch_size: int = 8, blocks: torch.Tensor | None = None) -> dict:
    """Token-weighted mean next-token loss over the first ``max_tokens`` tokens of the split, in blocks (or over
    ``blocks``)."""
    from ..data.blocks import dataset_blocks

    if blocks is None:
        blocks = dataset_blocks(tokenizer, dataset, split=split, block_size=block_size, max_tokens=max_tokens)
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in tqdm(range(0, blocks.shape[0], batch_size), desc="eval loss", leave=False):
        x = blocks[i:i + batch_size].to(device)
        out = model(input_ids=x, labels=x)
        n = x.numel() - x.shape[0]  # predicted positions
        total += float(out.loss) * n
        count += n
    loss = total / count
    return {"val_loss": loss, "val_ppl": math.exp(loss), "n_eval_tokens": int(count)}
