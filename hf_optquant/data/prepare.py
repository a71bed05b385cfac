"""Tokenize a corpus once, into a token store, reading only what the budget needs.

Text is encoded in batches by ``tokenizers``' Rust ``encode_batch`` (all cores of the process,
no per-process copy of the tokenizer or pickling of ids back); a pre-tokenized column is copied
from Arrow buffers to numpy without touching a Python int per token.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import ConfigError
from .config import DataConfig
from .source import iter_batches, open_splits, source_identity
from .store import (
    SplitWriter,
    TokenStore,
    find_store,
    publish_store,
    store_dir_name,
    store_identity,
    temp_store_dir,
    token_dtype,
)

__all__ = ["prepare_tokens", "encode_batch", "store_for"]

logger = logging.getLogger(__name__)


def _texts(batch) -> list[str]:
    texts = batch if isinstance(batch, list) else batch.to_pylist()
    return [t for t in texts if t]


def encode_batch(batch, tokenizer, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, doc_ends)``: the batch's tokens concatenated (EOS after each document when
    ``append_eos``) and the end offset of each document in ``ids``."""
    eos = tokenizer.eos_token_id if cfg.append_eos else None
    if cfg.append_eos and eos is None:
        raise ConfigError("data.append_eos", "the tokenizer has no EOS token", "use append_eos: false or "
                          "a tokenizer with an eos_token")
    if cfg.token_column:
        return _from_token_column(batch, eos, len(tokenizer), cfg.token_column)
    texts = _texts(batch)
    if not texts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a Python ("slow") tokenizer
        seqs = tokenizer(texts, add_special_tokens=False)["input_ids"]
    else:
        seqs = [e.ids for e in getattr(backend, "encode_batch_fast", backend.encode_batch)(texts, add_special_tokens=False)]
    flat: list[int] = []
    ends = np.empty(len(seqs), np.int64)
    for i, seq in enumerate(seqs):
        flat.extend(seq)
        if eos is not None:
            flat.append(eos)
        ends[i] = len(flat)
    return np.array(flat, dtype=np.int64), ends


def _from_token_column(batch, eos, vocab: int, column: str):
    import pyarrow as pa

    if isinstance(batch, list):
        batch = pa.array(batch)
    arr = batch.combine_chunks() if isinstance(batch, pa.ChunkedArray) else batch
    if not pa.types.is_list(arr.type) and not pa.types.is_large_list(arr.type):
        raise ConfigError("data.token_column", f"{column!r} holds {arr.type}, not lists of token ids",
                          "name the column of token ids, or use text_column for text")
    arr = arr.filter(pa.compute.greater(pa.compute.list_value_length(arr), 0))
    if len(arr) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    offsets = arr.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() >= vocab):
        raise ConfigError("tokenizer", f"the ids of {column!r} reach {int(values.max())}, outside the tokenizer's "
                          f"{vocab} tokens", "name the tokenizer the corpus was tokenized with (e.g. gpt2)")
    ends = offsets[1:]
    if eos is not None:
        values = np.insert(values, ends, eos)
        ends = ends + np.arange(1, len(ends) + 1)
    return values, ends


def _fill(writer: SplitWriter, batches, tokenizer, cfg, limit: int | None, bar, hold: SplitWriter | None = None,
          hold_tokens: int = 0) -> bool:
    """Write documents until ``limit`` tokens (cut at the token); the first ``hold_tokens`` worth of
    documents go to ``hold`` instead. True when the stream ran out first."""
    for batch in batches:
        ids, ends = encode_batch(batch, tokenizer, cfg)
        if hold is not None and hold.tokens < hold_tokens and ids.size:
            k = int(np.searchsorted(ends, hold_tokens - hold.tokens, side="left")) + 1
            k = min(k, len(ends))
            cut = int(ends[k - 1])
            hold.write(ids[:cut], documents=k)
            ids, ends = ids[cut:], ends[k:] - cut
        if not ids.size:
            continue
        if limit is not None:
            room = limit - writer.tokens
            if ids.size >= room:
                writer.write(ids[:room], documents=int(np.searchsorted(ends, room, side="left")) + 1)
                bar.update(room)
                return False
        writer.write(ids, documents=len(ends))
        bar.update(int(ids.size))
    return True


def prepare_tokens(cfg: DataConfig, tokenizer, *, train_tokens: int | None, eval_tokens: int | None,
                   cache_dir: str | os.PathLike, progress: bool = True) -> TokenStore:
    """The token store of ``cfg`` for this tokenizer: found in ``cache_dir`` or built there.

    ``train_tokens``: the training budget (None: the whole corpus). ``eval_tokens``: validation tokens
    (None: the whole validation split; required when validation is held out of the training stream).
    """
    if train_tokens is not None and train_tokens <= 0:
        raise ConfigError("max_steps", "the budget is zero tokens", "set a positive max_steps or tokens_per_param")
    identity = store_identity(source_identity(cfg), tokenizer, eval_tokens)
    found = find_store(cache_dir, identity, train_tokens)
    if found is not None:
        return found
    train, val = open_splits(cfg)
    if val is None and eval_tokens is None:
        raise ConfigError("max_eval_tokens", f"{cfg.dataset!r} has no validation split, so validation is held "
                          "out of the training stream and needs a size", "set max_eval_tokens, e.g. 1048576")
    name = store_dir_name(identity, train_tokens)
    tmp = temp_store_dir(Path(cache_dir), name)
    dtype = token_dtype(len(tokenizer))
    try:
        vw = SplitWriter(tmp, "validation", dtype, cfg.shard_tokens)
        tw = SplitWriter(tmp, "train", dtype, cfg.shard_tokens)
        with tqdm(total=train_tokens, unit="tok", unit_scale=True, desc=f"tokenize {Path(cfg.dataset).name}",
                  disable=not progress) as bar:
            if val is not None:
                _fill(vw, iter_batches(val, cfg), tokenizer, cfg, eval_tokens, tqdm(disable=True))
                exhausted = _fill(tw, iter_batches(train, cfg), tokenizer, cfg, train_tokens, bar)
            else:
                exhausted = _fill(tw, iter_batches(train, cfg), tokenizer, cfg, train_tokens, bar, hold=vw,
                                  hold_tokens=eval_tokens)
        if vw.tokens == 0 or tw.tokens == 0:
            raise ConfigError("dataset", f"{cfg.dataset!r} gave {tw.tokens} training and {vw.tokens} validation "
                              "tokens", "use a corpus with text in the named column")
        index = {"format": identity["format"], "identity": identity, "dtype": dtype.name,
                 "vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id,
                 "budget": {"train_tokens": train_tokens, "eval_tokens": eval_tokens},
                 "splits": {"train": tw.close(exhausted=exhausted),
                            "validation": vw.close(held_out_of_train=val is None, exhausted=False)}}
        store = publish_store(tmp, Path(cache_dir) / name, index)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("token store %s: %d train, %d validation tokens", store.path, store.n_tokens("train"),
                store.n_tokens("validation"))
    return store


def store_for(cfg: DataConfig, tokenizer, *, eval_tokens: int | None, cache_dir) -> TokenStore | None:
    """An existing store of this identity, whatever its budget (the largest); None if there is none."""
    from .store import _digest

    identity = store_identity(source_identity(cfg), tokenizer, eval_tokens)
    best = None
    for d in Path(cache_dir).glob(f"tokens-*-{_digest(identity)}-*"):
        if (d / "index.json").is_file():
            s = TokenStore(d)
            if s.index["identity"] == identity and (best is None or s.n_tokens("train") > best.n_tokens("train")):
                best = s
    return best
