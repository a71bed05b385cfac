"""Data: the offline Penn Treebank default, local tokenizer training, packing into blocks."""
from .ptb import ptb_splits
from .tokenizer import train_bpe_tokenizer, load_or_train_tokenizer
from .packing import pack_tokens, load_text_splits, build_lm_datasets

__all__ = [
    "ptb_splits",
    "train_bpe_tokenizer",
    "load_or_train_tokenizer",
    "pack_tokens",
    "load_text_splits",
    "build_lm_datasets",
]
