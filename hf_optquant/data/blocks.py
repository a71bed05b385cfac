"""``TokenBlocks``: a map-style torch Dataset whose item ``i`` is tokens ``[i*B, (i+1)*B)`` of a store split.

Map-style on purpose: HF Trainer's sampler then splits the blocks across DDP ranks and, on resume,
skips the batches already trained in the same seeded order, so a resumed run continues at the same
data position.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .store import ShardedTokens, TokenStore

__all__ = ["TokenBlocks", "store_blocks"]


class TokenBlocks(torch.utils.data.Dataset):
    def __init__(self, tokens: ShardedTokens, block_size: int, *, max_blocks: int | None = None):
        self.tokens, self.block_size = tokens, block_size
        n = len(tokens) // block_size
        self.n_blocks = n if max_blocks is None else min(n, max_blocks)

    def __len__(self) -> int:
        return self.n_blocks

    def block(self, i: int) -> np.ndarray:
        if not -self.n_blocks <= i < self.n_blocks:
            raise IndexError(i)
        i %= self.n_blocks
        return self.tokens.read(i * self.block_size, (i + 1) * self.block_size)

    def __getitem__(self, i):
        x = torch.from_numpy(self.block(int(i)).astype(np.int64))
        return {"input_ids": x, "labels": x.clone(), "attention_mask": torch.ones_like(x)}

    @property
    def blocks(self) -> torch.Tensor:
        """All blocks as one tensor (small splits only: validation, tests)."""
        return torch.from_numpy(self.tokens.read(0, self.n_blocks * self.block_size).astype(np.int64)
                                ).view(self.n_blocks, self.block_size)


def store_blocks(store: TokenStore, split: str, block_size: int, *, max_tokens: int | None = None) -> TokenBlocks:
    blocks = TokenBlocks(store.tokens(split), block_size,
                         max_blocks=None if max_tokens is None else max(1, max_tokens // block_size))
    if len(blocks) == 0:
        raise ConfigError("block_size", f"the {split} split has {store.n_tokens(split)} tokens, fewer than one block "
                          f"of {block_size}", "use a smaller block_size or more text")
    return blocks
