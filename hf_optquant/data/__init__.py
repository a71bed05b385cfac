"""Data: the offline Penn Treebank default, streamed corpora tokenized once into token shards on disk
(memmapped blocks), pre-tokenized corpora, a tokenizer trained on a bounded sample; and the small
blocks of a split for evaluation, diagnosis and GPTQ calibration (streamed, bounded); in-memory packing for tests."""
from .blocks import TokenBlocks, calibration_blocks, dataset_blocks, store_blocks
from .config import DataConfig
from .packing import build_lm_datasets, pack_tokens
from .prepare import prepare_tokens
from .ptb import ptb_splits
from .store import TokenStore
from .tokenizer import load_or_train_tokenizer, train_bpe_tokenizer, train_tokenizer_on_sample

__all__ = [
    "DataConfig",
    "prepare_tokens",
    "TokenStore",
    "TokenBlocks",
    "store_blocks",
    "train_tokenizer_on_sample",
    "ptb_splits",
    "train_bpe_tokenizer",
    "load_or_train_tokenizer",
    "pack_tokens",
    "dataset_blocks",
    "calibration_blocks",
    "build_lm_datasets",
]
