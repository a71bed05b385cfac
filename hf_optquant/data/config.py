"""``DataConfig``: where the tokens of a run come from and how they are stored.

Composed by ``TrainJobArguments`` (the ``data`` block of a train config) and by ``StudyConfig``
(its ``data`` block); ``dataset`` itself stays a top-level field of both.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ConfigError, unknown_key_error

__all__ = ["DataConfig"]


@dataclass(kw_only=True)
class DataConfig:
    dataset: str = field(default="ptb", metadata={
        "help": "'ptb' (offline default), a local .txt/.jsonl/.parquet/.csv file or dir, or a Hub dataset (streamed)."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    token_column: str | None = field(default=None, metadata={
        "help": "Column holding token ids of a pre-tokenized corpus (e.g. 'tokens' of nvidia/ClimbMix); its ids "
                "are read as they are, with the run's tokenizer (e.g. gpt2) naming their vocabulary."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    validation_split: str | None = field(default=None, metadata={
        "help": "Split to evaluate on; default: validation/valid/val if present, else the first documents of "
                "the training stream are held out (max_eval_tokens of them)."})
    append_eos: bool = field(default=True, metadata={"help": "Put the EOS token after every document."})
    tokenizer_sample_chars: int = field(default=20_000_000, metadata={
        "help": "Characters of training text a locally trained BPE learns from (the first ones of the stream); "
                "fixed, so the tokenizer's cost does not grow with the corpus. Recorded beside the tokenizer."})
    allow_epochs: bool = field(default=False, metadata={
        "help": "Allow a budget larger than the corpus (the data is repeated; the epochs are recorded in "
                "run.json). Default: refuse such a budget before training."})
    cache_dir: str | None = field(default=None, metadata={
        "help": "Where token shards are written (default: <study>/data for a study, <output_dir>/tokens for a run)."})
    batch_documents: int = field(default=1024, metadata={"help": "Documents per tokenization batch."})
    shard_tokens: int = field(default=1 << 28, metadata={"help": "Tokens per shard file."})

    def __post_init__(self):
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError("dataset", "must be a non-empty name or path", "use e.g. ptb or a .jsonl file")
        for name in ("text_column", "train_split"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"data.{name}", "must be a non-empty string", "e.g. text / train")
        if self.token_column is not None and (not isinstance(self.token_column, str) or not self.token_column):
            raise ConfigError("data.token_column", "must be a column name or null", "e.g. tokens")
        for name in ("tokenizer_sample_chars", "batch_documents", "shard_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"data.{name}", f"must be a positive integer, got {v!r}", "use e.g. 20000000")
        for name in ("append_eos", "allow_epochs"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"data.{name}", f"must be true or false, got {getattr(self, name)!r}",
                                  f"write {name}: true")

    @classmethod
    def from_block(cls, block: Any, **top_level) -> DataConfig:
        """Build from a ``data:`` mapping (or JSON text) plus the top-level fields (``dataset`` ...)."""
        import json

        if block is None:
            block = {}
        if isinstance(block, str):
            try:
                block = json.loads(block)
            except json.JSONDecodeError:
                raise ConfigError("data", f"cannot parse {block!r}", "write data as a mapping, e.g. "
                                  "data: {token_column: tokens}") from None
        if isinstance(block, DataConfig):
            block = {f.name: getattr(block, f.name) for f in fields(block)}
            block = {k: v for k, v in block.items() if k not in top_level}
        if not isinstance(block, dict):
            raise ConfigError("data", f"must be a mapping, got {type(block).__name__}",
                              "write data as a mapping, e.g. data: {token_column: tokens}")
        names = {f.name for f in fields(cls)}
        for key in block:
            if key in top_level:
                raise ConfigError(f"data.{key}", "is a top-level field", f"set {key} at the top level of the config")
            if key not in names:
                raise unknown_key_error(key, names, field=f"data.{key}")
        return cls(**{**block, **{k: v for k, v in top_level.items() if v is not None or k == "dataset_config"}})

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
