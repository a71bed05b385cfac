"""Token store: tokenized once to uint16/uint32 shards, read through memmaps, only the budget's tokens,
pre-tokenized columns, bounded tokenizer sample, one-line refusal of a too-small corpus."""
from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest

from hf_optquant.data.blocks import TokenBlocks, store_blocks
from hf_optquant.data.config import DataConfig
from hf_optquant.data.prepare import prepare_tokens
from hf_optquant.data.store import TokenStore, token_dtype
from hf_optquant.errors import ConfigError

WORDS = "the a market stock price rose fell said company year new share million bank".split()


def _docs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(n)]


def _jsonl(path, docs, column="text"):
    path.write_text("".join(json.dumps({column: d, "id": i}) + "\n" for i, d in enumerate(docs)))
    return path


def _reference(tokenizer, docs) -> np.ndarray:
    """Independent reference: one tokenizer call per document, EOS after each."""
    out = []
    for d in docs:
        out += tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return np.array(out, dtype=np.int64)


def test_streamed_file_matches_per_document_reference(tmp_path, tokenizer):
    docs = _docs(600)
    cfg = DataConfig(dataset=str(_jsonl(tmp_path / "c.jsonl", docs)), batch_documents=64, shard_tokens=1000)
    store = prepare_tokens(cfg, tokenizer, train_tokens=None, eval_tokens=500, cache_dir=tmp_path / "cache",
                           progress=False)
    ref = _reference(tokenizer, docs)
    val, train = store.tokens("validation"), store.tokens("train")
    assert store.index["dtype"] == "uint16" and store.exhausted
    assert len(store.index["splits"]["train"]["shards"]) > 1  # shards roll over; reads cross them
    # Validation is held out as whole first documents, at least eval_tokens of them; training is the rest.
    n_val = len(val)
    assert 500 <= n_val < 500 + 40 and ref[n_val - 1] == tokenizer.eos_token_id
    assert np.array_equal(val.read(0, n_val), ref[:n_val])
    assert np.array_equal(train.read(0, len(train)), ref[n_val:])
    blocks = store_blocks(store, "train", 64)
    assert len(blocks) == (len(ref) - n_val) // 64
    i = len(blocks) - 1
    assert np.array_equal(blocks[i]["input_ids"].numpy(), ref[n_val + 64 * i: n_val + 64 * (i + 1)])
    # A second request is served from disk: same directory, not rewritten.
    mtime = (store.path / "index.json").stat().st_mtime_ns
    again = prepare_tokens(cfg, tokenizer, train_tokens=1000, eval_tokens=500, cache_dir=tmp_path / "cache",
                           progress=False)
    assert again.path == store.path and (store.path / "index.json").stat().st_mtime_ns == mtime


def test_budget_reads_only_its_tokens_and_is_a_prefix(tmp_path, tokenizer):
    docs = _docs(3000, seed=1)
    cfg = DataConfig(dataset=str(_jsonl(tmp_path / "c.jsonl", docs)), batch_documents=100)
    small = prepare_tokens(cfg, tokenizer, train_tokens=2000, eval_tokens=300, cache_dir=tmp_path / "a",
                           progress=False)
    assert small.n_tokens("train") == 2000 and not small.exhausted
    # Only the documents the budget needed were read, not the corpus.
    read = small.index["splits"]["train"]["documents"] + small.index["splits"]["validation"]["documents"]
    assert read < 400 < len(docs)
    full = prepare_tokens(cfg, tokenizer, train_tokens=None, eval_tokens=300, cache_dir=tmp_path / "b",
                          progress=False)
    assert np.array_equal(small.tokens("train").read(0, 2000), full.tokens("train").read(0, 2000))
    # The larger store serves a smaller budget in the same cache; a larger one is built anew.
    assert prepare_tokens(cfg, tokenizer, train_tokens=1500, eval_tokens=300, cache_dir=tmp_path / "b",
                          progress=False).path == full.path
    bigger = prepare_tokens(cfg, tokenizer, train_tokens=2500, eval_tokens=300, cache_dir=tmp_path / "a",
                            progress=False)
    assert bigger.path != small.path and bigger.n_tokens("train") == 2500


def test_key_separates_what_changes_the_tokens(tmp_path, tokenizer):
    from hf_optquant.data import train_bpe_tokenizer

    path = _jsonl(tmp_path / "c.jsonl", _docs(300))
    base = DataConfig(dataset=str(path))
    kw = dict(train_tokens=500, cache_dir=tmp_path / "cache", progress=False)
    first = prepare_tokens(base, tokenizer, eval_tokens=200, **kw).path
    other_tok = train_bpe_tokenizer(_docs(300, seed=5), vocab_size=300)
    paths = {first,
             prepare_tokens(base, tokenizer, eval_tokens=100, **kw).path,
             prepare_tokens(base, other_tok, eval_tokens=200, **kw).path,
             prepare_tokens(DataConfig(dataset=str(path), append_eos=False), tokenizer, eval_tokens=200, **kw).path}
    assert len(paths) == 4
    _jsonl(path, _docs(300, seed=9))  # the file changes: its shards are rebuilt
    assert prepare_tokens(base, tokenizer, eval_tokens=200, **kw).path != first


def test_pretokenized_column_is_read_without_retokenizing(tmp_path, tokenizer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    rows = [rng.integers(1, len(tokenizer), size=int(rng.integers(5, 40))).tolist() for _ in range(400)]
    rows[7] = []  # empty documents are skipped
    pq.write_table(pa.table({"tokens": rows, "n": [len(r) for r in rows]}), tmp_path / "ids.parquet")
    cfg = DataConfig(dataset=str(tmp_path / "ids.parquet"), token_column="tokens", batch_documents=50)
    store = prepare_tokens(cfg, tokenizer, train_tokens=None, eval_tokens=100, cache_dir=tmp_path / "c",
                           progress=False)
    eos = tokenizer.eos_token_id
    ref = np.array([t for r in rows if r for t in r + [eos]])
    got = np.concatenate([store.tokens("validation").read(0, store.n_tokens("validation")),
                          store.tokens("train").read(0, store.n_tokens("train"))])
    assert np.array_equal(got, ref)
    # Ids outside the named tokenizer's vocabulary: the wrong tokenizer, one line.
    pq.write_table(pa.table({"tokens": [[1, 2, len(tokenizer) + 5]] * 10}), tmp_path / "bad.parquet")
    with pytest.raises(ConfigError, match="tokenizer.*outside"):
        prepare_tokens(DataConfig(dataset=str(tmp_path / "bad.parquet"), token_column="tokens"), tokenizer,
                       train_tokens=None, eval_tokens=10, cache_dir=tmp_path / "c", progress=False)
    with pytest.raises(ConfigError, match="not a column"):
        prepare_tokens(DataConfig(dataset=str(tmp_path / "ids.parquet"), token_column="ids"), tokenizer,
                       train_tokens=None, eval_tokens=10, cache_dir=tmp_path / "c", progress=False)


def test_dtype_follows_vocabulary():
    assert token_dtype(512) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32 and token_dtype(151_936) == np.uint32


def test_failed_build_leaves_nothing(tmp_path, tokenizer, monkeypatch):
    import hf_optquant.data.prepare as prep

    cfg = DataConfig(dataset=str(_jsonl(tmp_path / "c.jsonl", _docs(500))), batch_documents=50)
    calls = {"n": 0}
    real = prep.encode_batch

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(prep, "encode_batch", failing)
    with pytest.raises(KeyboardInterrupt):
        prepare_tokens(cfg, tokenizer, train_tokens=None, eval_tokens=100, cache_dir=tmp_path / "c", progress=False)
    assert list((tmp_path / "c").iterdir()) == []


def test_blocks_pickle_without_their_tokens(tmp_path, tokenizer):
    cfg = DataConfig(dataset=str(_jsonl(tmp_path / "c.jsonl", _docs(2000))))
    store = prepare_tokens(cfg, tokenizer, train_tokens=None, eval_tokens=100, cache_dir=tmp_path / "c",
                           progress=False)
    ds = store_blocks(store, "train", 32)
    _ = ds[0]  # the memmap is open
    clone = pickle.loads(pickle.dumps(ds))  # what a DataLoader worker receives
    assert len(pickle.dumps(ds)) < 2000 < store.n_tokens("train") * 2
    assert all(np.array_equal(clone[i]["input_ids"], ds[i]["input_ids"]) for i in (0, len(ds) - 1))
    assert isinstance(clone, TokenBlocks) and TokenStore(store.path).n_tokens("train") == store.n_tokens("train")


def test_tokenizer_learns_from_a_bounded_sample(tmp_path):
    from hf_optquant.data.tokenizer import SAMPLE_RECORD, train_tokenizer_on_sample

    docs = _docs(4000, seed=3)
    cfg = DataConfig(dataset=str(_jsonl(tmp_path / "c.jsonl", docs)), tokenizer_sample_chars=5000)
    tok = train_tokenizer_on_sample(cfg, 300, tmp_path / "tok")
    rec = json.loads((tmp_path / "tok" / SAMPLE_RECORD).read_text())
    assert rec["chars"] == 5000 and rec["limit_chars"] == 5000
    assert rec["documents"] < 200 < len(docs)
    assert len(tok) <= 300 and tok.eos_token_id is not None
    with pytest.raises(ConfigError, match="tokenizer"):
        train_tokenizer_on_sample(DataConfig(dataset=str(tmp_path / "c.jsonl"), token_column="tokens"), 300,
                                  tmp_path / "tok2")


def test_data_config_rejects_bad_fields():
    with pytest.raises(ConfigError, match="data.tokenizer_sample_chars"):
        DataConfig(tokenizer_sample_chars=0)
    with pytest.raises(ConfigError, match="data.toke_column.*token_column"):
        DataConfig.from_block({"toke_column": "x"}, dataset="ptb")
    with pytest.raises(ConfigError, match="data.dataset.*top level"):
        DataConfig.from_block({"dataset": "x"}, dataset="ptb")
    assert DataConfig.from_block({"token_column": "tokens"}, dataset="d").token_column == "tokens"
