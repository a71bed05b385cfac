"""A byte-level BPE tokenizer trained locally with ``tokenizers`` and wrapped for ``transformers``."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

__all__ = ["train_bpe_tokenizer", "load_or_train_tokenizer", "sample_texts", "train_tokenizer_on_sample",
           "SAMPLE_RECORD"]

SAMPLE_RECORD = "tokenizer_sample.json"

EOS = "<|endoftext|>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS,
                                   unk_token=None)


def load_or_train_tokenizer(name_or_path: str | None, texts: Iterable[str] | None = None,
                            vocab_size: int = 2048, cache_dir: str | os.PathLike | None = None):
    """A pretrained tokenizer by name/path, or a BPE trained on ``texts`` (cached in ``cache_dir``)."""
    if name_or_path:
        return AutoTokenizer.from_pretrained(name_or_path)
    if cache_dir is not None and (Path(cache_dir) / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(str(cache_dir))
    if texts is None:
        raise ValueError("texts are needed to train a tokenizer")
    tok = train_bpe_tokenizer(texts, vocab_size=vocab_size)
    if cache_dir is not None:
        from ..io import atomic_dir

        with atomic_dir(cache_dir, overwrite=True) as tmp:
            tok.save_pretrained(tmp)
    return tok


def sample_texts(cfg, max_chars: int, record: dict) -> Iterable[str]:
    """The first documents of the training stream, up to ``max_chars`` characters in all (the document that
    crosses the limit is cut), counted into ``record``; the stream is read no further."""
    from .source import iter_batches, open_splits

    train, _ = open_splits(cfg)
    record.update(chars=0, documents=0)
    for batch in iter_batches(train, cfg):
        for text in batch if isinstance(batch, list) else batch.to_pylist():
            if not text:
                continue
            text = text[: max_chars - record["chars"]]
            record["chars"] += len(text)
            record["documents"] += 1
            yield text
            if record["chars"] >= max_chars:
                return


def train_tokenizer_on_sample(cfg, vocab_size: int, cache_dir: str | os.PathLike):
    """A BPE trained on a bounded sample of ``cfg``'s training text (``cfg.tokenizer_sample_chars``
    characters), saved to ``cache_dir`` with the sample's size recorded in ``tokenizer_sample.json``;
    loaded from there when it exists. Its cost does not depend on the size of the corpus."""
    from ..errors import ConfigError
    from ..io import atomic_dir, atomic_write_json, read_json

    cache_dir = Path(cache_dir)
    if (cache_dir / "tokenizer.json").exists():
        rec = cache_dir / SAMPLE_RECORD
        if rec.exists() and read_json(rec).get("dataset") not in (None, cfg.dataset):
            raise ConfigError("tokenizer", f"{cache_dir} was trained on {read_json(rec)['dataset']!r}, not "
                              f"{cfg.dataset!r}", "use a new output_dir or delete the tokenizer dir")
        return AutoTokenizer.from_pretrained(str(cache_dir))
    if cfg.token_column:
        raise ConfigError("tokenizer", f"{cfg.dataset!r} is read as token ids ({cfg.token_column!r}), so its "
                          "tokenizer cannot be trained here", "name the corpus's tokenizer, e.g. tokenizer: gpt2")
    record = {"dataset": cfg.dataset, "dataset_config": cfg.dataset_config, "column": cfg.text_column,
              "limit_chars": cfg.tokenizer_sample_chars, "vocab_size": vocab_size}
    tok = train_bpe_tokenizer(sample_texts(cfg, cfg.tokenizer_sample_chars, record), vocab_size=vocab_size)
    if record["chars"] == 0:
        raise ConfigError("dataset", f"{cfg.dataset!r} has no text in column {cfg.text_column!r}",
                          "name the text column with text_column")
    with atomic_dir(cache_dir, overwrite=True) as tmp:
        tok.save_pretrained(tmp)
        atomic_write_json(Path(tmp) / SAMPLE_RECORD, record)
    return tok
