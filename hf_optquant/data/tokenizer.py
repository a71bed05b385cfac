"""A byte-level BPE tokenizer trained locally with ``tokenizers`` and wrapped for ``transformers``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from transformers import AutoTokenizer, PreTrainedTokenizerFast

__all__ = ["train_bpe_tokenizer", "load_or_train_tokenizer"]

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
