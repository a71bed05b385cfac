"""Load text splits (PTB default, any ``datasets`` name, or local files) and pack them into blocks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["load_text_splits", "pack_tokens", "build_lm_datasets", "BlockDataset"]


def load_text_splits(dataset: str = "ptb", *, dataset_config: str | None = None,
                     text_column: str = "text") -> dict[str, list[str]]:
    """``ptb`` (offline default), a local .txt/.jsonl/.parquet file or dir, or a Hub dataset name."""
    if dataset == "ptb":
        from .ptb import ptb_splits

        return ptb_splits()
    import datasets

    path = Path(dataset)
    try:
        if path.exists():
            if path.is_file():
                ext = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet",
                       ".csv": "csv"}.get(path.suffix)
                if ext is None:
                    raise ConfigError("dataset", f"cannot read {path.suffix} files", "use .txt, .jsonl, .parquet or .csv")
                ds = datasets.load_dataset(ext, data_files=str(path))
            else:
                ds = datasets.load_dataset(str(path))
        else:
            ds = datasets.load_dataset(dataset, dataset_config)
    except ConfigError:
        raise
    except Exception as exc:  # datasets raises many types for a missing dataset
        raise ConfigError(
            "dataset",
            f"cannot load {dataset!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
            "use 'ptb' (offline default), a local file/dir, or a Hub dataset name while online",
        ) from None
    out = {}
    for split in ds:
        if text_column not in ds[split].column_names:
            raise ConfigError("text_column", f"{text_column!r} is not a column of {dataset}",
                              f"use one of {ds[split].column_names}")
        out["validation" if split in ("valid", "val") else split] = [t for t in ds[split][text_column] if t]
    if "train" not in out:
        raise ConfigError("dataset", f"{dataset!r} has no train split", "provide a dataset with a train split")
    if "validation" not in out:
        # Hold out the last 2% of the training text: deterministic, so runs stay comparable.
        n = max(1, len(out["train"]) // 50)
        out["validation"] = out["train"][-n:]
        out["train"] = out["train"][:-n]
    return out


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


