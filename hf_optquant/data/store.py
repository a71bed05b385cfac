"""Token shards on disk: a corpus tokenized once into flat ``uint16``/``uint32`` files plus ``index.json``.

Runs read the shards through ``np.memmap``, so a training block is a slice and memory does not grow
with the corpus. A store is keyed on everything that changes its tokens (source, column, splits,
tokenizer hash, validation size) and on its training budget; a store holding at least the tokens a run
needs (or the whole corpus) serves that run, since a budget's tokens are a prefix of a larger one's.

Written by hand because no library does this job: ``datasets`` keeps Arrow tables of token lists
(int64 per token, one row per document), not a flat slice-able token stream, and its cache is keyed
on the fingerprint of the whole corpus, not on a budget read from a stream.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..io import atomic_write_json, read_json

__all__ = ["TokenStore", "ShardedTokens", "token_dtype", "tokenizer_hash", "store_identity", "find_store",
           "SplitWriter", "FORMAT"]

FORMAT = "hf_optquant.tokens/1"


def token_dtype(vocab_size: int) -> np.dtype:
    """``uint16`` when every id fits (GPT-2's 50,257 and the paper's 32,000 do), else ``uint32``."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def tokenizer_hash(tokenizer) -> str:
    """Hash of the full tokenizer definition (vocabulary, merges, normalizer, specials)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(f"{text}|eos={tokenizer.eos_token_id}".encode()).hexdigest()[:16]


def store_identity(source: dict, tokenizer, eval_tokens: int | None) -> dict:
    return {"format": FORMAT, "source": source, "tokenizer": tokenizer_hash(tokenizer),
            "vocab_size": len(tokenizer), "eval_tokens": eval_tokens}


def _digest(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def _slug(dataset: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(dataset).name or dataset)[:40]


class ShardedTokens:
    """A split's tokens across its shard files, read through memmaps opened on first use."""

    def __init__(self, root: Path, shards: list[dict], dtype: str):
        self.root, self.dtype = Path(root), np.dtype(dtype)
        self.files = [s["file"] for s in shards]
        self.sizes = np.array([s["tokens"] for s in shards], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])
        self._maps: list | None = None

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _open(self) -> list:
        if self._maps is None:
            self._maps = [np.memmap(self.root / f, dtype=self.dtype, mode="r", shape=(int(n),))
                          for f, n in zip(self.files, self.sizes)]
        return self._maps

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens ``[start, stop)`` (a view when they lie in one shard)."""
        maps = self._open()
        i = int(np.searchsorted(self.starts, start, side="right")) - 1
        lo = start - int(self.starts[i])
        if stop <= self.starts[i + 1]:
            return maps[i][lo:lo + stop - start]
        parts, pos = [], start
        while pos < stop:
            i = int(np.searchsorted(self.starts, pos, side="right")) - 1
            end = min(stop, int(self.starts[i + 1]))
            parts.append(maps[i][pos - int(self.starts[i]):end - int(self.starts[i])])
            pos = end
        return np.concatenate(parts)

    def __getstate__(self):
        # A memmap would be pickled as its data: DataLoader workers reopen the files instead.
        state = dict(self.__dict__)
        state["_maps"] = None
        return state


class TokenStore:
    """A finished store directory (``index.json`` plus shards)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.index = read_json(self.path / "index.json")
        if self.index.get("format") != FORMAT:
            raise ConfigError("data.cache_dir", f"{self.path} is not a token store of this version",
                              "delete it or choose another cache_dir")

    def tokens(self, split: str) -> ShardedTokens:
        if split not in self.index["splits"]:
            raise ConfigError("data", f"the token store has no {split!r} split", "rebuild it")
        return ShardedTokens(self.path, self.index["splits"][split]["shards"], self.index["dtype"])

    def n_tokens(self, split: str) -> int:
        return int(self.index["splits"][split]["tokens"])

    @property
    def exhausted(self) -> bool:
        """True when the whole training split was read (the store holds all the corpus has)."""
        return bool(self.index["splits"]["train"]["exhausted"])

    def serves(self, train_tokens: int | None) -> bool:
        if train_tokens is None:
            return self.exhausted
        return self.exhausted or self.n_tokens("train") >= train_tokens


def find_store(cache_dir: str | os.PathLike, identity: dict, train_tokens: int | None) -> TokenStore | None:
    """The smallest finished store of this identity that serves ``train_tokens`` (None: the whole corpus)."""
    root = Path(cache_dir)
    if not root.is_dir():
        return None
    best = None
    for d in root.glob(f"tokens-*-{_digest(identity)}-*"):
        if not (d / "index.json").is_file() or d.name.endswith(".partial"):
            continue
        store = TokenStore(d)
        if store.index["identity"] == identity and store.serves(train_tokens):
            if best is None or store.n_tokens("train") < best.n_tokens("train"):
                best = store
    return best


def store_dir_name(identity: dict, train_tokens: int | None) -> str:
    return f"tokens-{_slug(identity['source']['dataset'])}-{_digest(identity)}-{train_tokens or 'all'}"


class SplitWriter:
    """Appends token arrays to ``<split>-NNNNN.bin`` files of at most ``shard_tokens`` tokens."""

    def __init__(self, root: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.root, self.split, self.dtype, self.shard_tokens = root, split, dtype, shard_tokens
        self.shards: list[dict] = []
        self.documents = 0
        self._fh = None

    @property
    def tokens(self) -> int:
        return sum(s["tokens"] for s in self.shards)

    def write(self, ids: np.ndarray, documents: int = 0) -> None:
        self.documents += documents
        ids = ids.astype(self.dtype, copy=False)
        while ids.size:
            if self._fh is None or self.shards[-1]["tokens"] >= self.shard_tokens:
                self._roll()
            room = self.shard_tokens - self.shards[-1]["tokens"]
            part, ids = ids[:room], ids[room:]
            part.tofile(self._fh)
            self.shards[-1]["tokens"] += int(part.size)

    def _roll(self) -> None:
        if self._fh is not None:
            self._fh.close()
        name = f"{self.split}-{len(self.shards):05d}.bin"
        self._fh = open(self.root / name, "wb")
        self.shards.append({"file": name, "tokens": 0})

    def close(self, **extra) -> dict:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
        return {"shards": self.shards, "tokens": self.tokens, "documents": self.documents, **extra}


def publish_store(tmp: Path, final: Path, index: dict) -> TokenStore:
    """Write the index last, then rename the directory into place. A concurrent builder of the same
    store may have won the race: its store is identical, so ours is dropped and theirs used (replacing
    it could pull files from under a run that already has them open)."""
    index = {**index, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(tmp / "index.json", index)
    try:
        os.rename(tmp, final)
    except OSError:
        if not (final / "index.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return TokenStore(final)


def temp_store_dir(cache_dir: Path, name: str) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=cache_dir))
