"""``dataset_blocks``: the blocks evaluation, diagnosis and GPTQ calibration read from a dataset. Streamed and
bounded (only the documents the tokens asked for are tokenized, nothing is cached), the same tokens as an
independent per-document reference, and a held-out validation equal to what training holds out."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from hf_optquant.data.blocks import calibration_blocks, dataset_blocks, store_blocks
from hf_optquant.data.config import DataConfig
from hf_optquant.data.prepare import prepare_tokens
from hf_optquant.errors import ConfigError

WORDS = "the a market stock price rose fell said company year new share million bank".split()
N_DOCS = 50_000  # ~1.2M tokens: a corpus far larger than the blocks read


def _docs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(n)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    docs = _docs(N_DOCS)
    path = tmp_path_factory.mktemp("blocks") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path, docs


class CountingTokenizer:
    """The tokenizer, counting the documents it is asked to encode."""

    def __init__(self, tok):
        self.tok, self.documents = tok, 0
        self.eos_token_id = tok.eos_token_id

    def __call__(self, texts, **kw):
        self.documents += len(texts)
        return self.tok(texts, **kw)


def _reference(tokenizer, docs, block_size, n_blocks) -> torch.Tensor:
    """Independent reference: one tokenizer call per document, EOS after each, cut into blocks."""
    ids = []
    for d in docs:
        ids += tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(ids) >= n_blocks * block_size:
            break
    return torch.tensor(np.array(ids[: n_blocks * block_size], dtype=np.int64)).view(n_blocks, block_size)


def test_reads_only_what_it_needs(corpus, tokenizer, tmp_path, monkeypatch):
    import datasets

    path, docs = corpus
    cache = tmp_path / "hf_cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    counting = CountingTokenizer(tokenizer)
    blocks = dataset_blocks(counting, str(path), split="train", block_size=64, max_tokens=4096)
    assert blocks.shape == (64, 64) and blocks.dtype == torch.int64
    assert torch.equal(blocks, _reference(tokenizer, docs, 64, 64))
    # ~ 4096 tokens / ~18 per document: a few hundred documents, never the corpus; a read-everything
    # implementation (load_dataset without streaming, then tokenizing the split) encodes all 50,000.
    needed = int(np.searchsorted(np.cumsum([len(tokenizer(d, add_special_tokens=False)["input_ids"]) + 1 for d in docs[:2000]]), 4096 + 64)) + 1
    assert needed <= counting.documents <= needed + 128
    assert not cache.exists() or not any(cache.rglob("*.arrow"))  # streamed: no copy of the corpus


def test_validation_is_what_training_holds_out(corpus, tokenizer, tmp_path):
    path, _ = corpus
    cfg = DataConfig(dataset=str(path))  # no validation split: training holds out the first documents
    store = prepare_tokens(cfg, tokenizer, train_tokens=8192, eval_tokens=2048, cache_dir=tmp_path, progress=False)
    held_out = store_blocks(store, "validation", 64, max_tokens=2048).blocks
    read = dataset_blocks(tokenizer, str(path), split="validation", block_size=64, max_tokens=2048)
    assert torch.equal(read, held_out)
    # the store itself is a source too (the study reads its own shards)
    assert torch.equal(dataset_blocks(tokenizer, store, split="validation", block_size=64, max_tokens=2048), held_out)


def test_calibration_from_the_configured_dataset(corpus, tokenizer):
    path, docs = corpus
    calib = calibration_blocks(tokenizer, str(path), n=8, seq_len=32, seed=1)
    pool = _reference(tokenizer, docs, 32, 32)  # CALIBRATION_POOL * n windows
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(1))[:8]
    assert torch.equal(calib, pool[perm])
    assert not torch.equal(calib, calibration_blocks(tokenizer, "ptb", n=8, seq_len=32, seed=1))


def test_errors_name_the_field(corpus, tokenizer, tmp_path):
    path, _ = corpus
    with pytest.raises(ConfigError) as e:
        dataset_blocks(tokenizer, str(path), split="test", block_size=64, max_tokens=128)
    assert e.value.field == "split" and "test" in str(e.value)
    with pytest.raises(ConfigError) as e:
        calibration_blocks(tokenizer, str(tmp_path / "missing.txt"), n=4, seq_len=32)
    assert e.value.field == "calibration"
    (tmp_path / "short.txt").write_text("a b\n")
    with pytest.raises(ConfigError) as e:
        calibration_blocks(tokenizer, str(tmp_path / "short.txt"), n=4, seq_len=32)
    assert e.value.field == "calibration" and "fewer than 32 tokens" in str(e.value)


def test_pretokenized_column_and_append_eos_are_read_as_training_reads_them(tokenizer, tmp_path):
    """A DataConfig with a token-id column (ClimbMix's `tokens`) gives its ids, not a tokenizer call on them, and
    append_eos is the config's, as in training."""
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, len(tokenizer), rng.integers(5, 40)).tolist() for _ in range(400)]
    path = tmp_path / "ids.jsonl"
    path.write_text("".join(json.dumps({"tokens": r}) + "\n" for r in rows))
    eos = tokenizer.eos_token_id
    for append_eos in (True, False):
        cfg = DataConfig(dataset=str(path), token_column="tokens", validation_split=0.0, append_eos=append_eos)
        got = dataset_blocks(tokenizer, cfg, split="train", block_size=32, max_tokens=2048)
        flat = [t for r in rows for t in (r + [eos] if append_eos else r)]
        assert got.shape == (64, 32)
        assert torch.equal(got.flatten(), torch.tensor(flat[:2048]))
