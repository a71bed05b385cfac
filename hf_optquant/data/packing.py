"""In-memory packing of a list of texts into blocks (tests, small benchmarks). Reading a dataset's split is
``blocks.dataset_blocks`` (streamed, bounded)."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["pack_tokens", "build_lm_datasets", "BlockDataset"]


def pack_tokens(texts: list[str], tokenizer, block_size: int, *, max_tokens: int | None = None) -> torch.Tensor:
    """Concatenate texts with EOS between them and cut into (n_blocks, block_size) token ids."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for seq in enc:
        ids.extend(seq)
        if eos is not None:
            ids.append(eos)
        if max_tokens is not None and len(ids) >= max_tokens + block_size:
            break
    n = len(ids) // block_size
    if max_tokens is not None:
        n = min(n, max(1, max_tokens // block_size))
    if n == 0:
        raise ConfigError("block_size", f"the text has {len(ids)} tokens, fewer than one block of {block_size}",
                          "use a smaller block_size or more text")
    return torch.tensor(np.asarray(ids[: n * block_size], dtype=np.int64)).view(n, block_size)


class BlockDataset(torch.utils.data.Dataset):
    """Fixed-length blocks for causal LM training (labels = input_ids; the model shifts)."""

    def __init__(self, blocks: torch.Tensor):
        self.blocks = blocks

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, i):
        x = self.blocks[i]
        return {"input_ids": x, "labels": x.clone(), "attention_mask": torch.ones_like(x)}


def build_lm_datasets(tokenizer, splits: dict[str, list[str]], block_size: int, *,
                      max_train_tokens: int | None = None, max_eval_tokens: int | None = None):
    """(train, validation, test-or-None) ``BlockDataset``s."""
    train = BlockDataset(pack_tokens(splits["train"], tokenizer, block_size, max_tokens=max_train_tokens))
    val = BlockDataset(pack_tokens(splits["validation"], tokenizer, block_size, max_tokens=max_eval_tokens))
    test = None
    if splits.get("test"):
        test = BlockDataset(pack_tokens(splits["test"], tokenizer, block_size, max_tokens=max_eval_tokens))
    return train, val, test


