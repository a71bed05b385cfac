"""One training run from configs: model + data + ``OptQuantTrainingArguments`` -> a run dir.

Used by ``hf-optquant train`` and by the study pipeline. A finished run (``run.json``
present) is skipped; an interrupted one resumes from its last checkpoint.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import ConfigError

__all__ = ["TrainJobArguments", "budget_steps", "run_training", "last_checkpoint"]

logger = logging.getLogger(__name__)


@dataclass
class TrainJobArguments:
    model: str = field(default="tiny-2", metadata={"help": "Size preset (e.g. tiny-2, 125M) or a model dir / Hub id."})
    tokenizer: Optional[str] = field(
        default=None, metadata={"help": "Tokenizer dir / Hub id; default: for a preset, a BPE trained on the data."}
    )
    vocab_size: Optional[int] = field(
        default=None, metadata={"help": "Vocabulary of the locally trained BPE; default: the preset's."}
    )
    dataset: str = field(default="ptb", metadata={"help": "'ptb' (offline default), a local file/dir, or a Hub dataset."})
    dataset_config: Optional[str] = field(default=None, metadata={"help": "Hub dataset configuration name."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    block_size: int = field(default=128, metadata={"help": "Tokens per training sequence (packed)."})
    tokens_per_param: Optional[float] = field(
        default=None,
        metadata={"help": "Token budget as a multiple of the parameter count (paper: 20); sets max_steps."},
    )
    max_eval_tokens: Optional[int] = field(default=65536, metadata={"help": "Cap on validation tokens."})
    model_seed: int = field(default=0, metadata={"help": "Seed of the initial weights of a preset model."})

    def __post_init__(self):
        if isinstance(self.block_size, bool) or not isinstance(self.block_size, int) or self.block_size <= 1:
            raise ConfigError("block_size", f"must be > 1, got {self.block_size}", "use e.g. 128")
        if self.tokens_per_param is not None and not self.tokens_per_param > 0:
            raise ConfigError("tokens_per_param", "must be positive", "use e.g. 20 (the paper's budget)")
        if self.vocab_size is not None and self.vocab_size < 260:
            raise ConfigError("vocab_size", "a byte-level BPE needs at least 257 tokens", "use e.g. 2048")
        if self.max_eval_tokens is not None and self.max_eval_tokens < self.block_size:
            raise ConfigError("max_eval_tokens", f"{self.max_eval_tokens} is fewer than one block of "
                              f"{self.block_size} tokens", f"use at least {self.block_size}, or null for all")
        from ..models import SIZE_PRESETS
        from ..models.limits import check_sequence_length

        m = str(self.model)
        if m not in SIZE_PRESETS and not Path(m).exists() and (Path(m).is_absolute() or m.startswith((".", "~"))
                                                               or m.count("/") > 1):
            raise ConfigError("model", f"there is no model dir {m}",
                              f"use a preset ({', '.join(SIZE_PRESETS)}), an existing model dir or a Hub id")

        check_sequence_length(self.model, self.block_size, "block_size")


def budget_steps(tokens_per_param: float, n_params: int, sequences_per_step: int, block_size: int) -> int:
    """Optimizer steps for a budget of ``tokens_per_param`` tokens per parameter (at least one)."""
    return max(1, math.ceil(tokens_per_param * n_params / (sequences_per_step * block_size)))


def last_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = [p for p in Path(output_dir).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    ckpts = [p for p in ckpts if (p / "trainer_state.json").exists()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[-1])) if ckpts else None


def _tokenizer(job: TrainJobArguments, splits, out: Path):
    """The run's tokenizer; a newly trained one is only saved (``save_tokenizer_cache``) once every check passed."""
    from ..data import load_or_train_tokenizer
    from ..models import SIZE_PRESETS

    if job.tokenizer:
        try:
            return load_or_train_tokenizer(job.tokenizer)
        except OSError as exc:
            raise ConfigError("tokenizer", f"cannot load {job.tokenizer!r} ({str(exc).splitlines()[0][:160]})",
                              "give a tokenizer dir or leave tokenizer unset to train one") from None
    if Path(job.model).is_dir() and (Path(job.model) / "tokenizer_config.json").exists():
        return load_or_train_tokenizer(job.model)
    vocab = job.vocab_size or (SIZE_PRESETS[job.model].vocab_size if job.model in SIZE_PRESETS else 2048)
    if (out / "tokenizer_cache" / "tokenizer.json").exists():
        return load_or_train_tokenizer(None, cache_dir=out / "tokenizer_cache")
    tok = load_or_train_tokenizer(None, splits["train"], vocab_size=vocab)
    tok._hfoq_unsaved = True
    return tok


def _save_tokenizer_cache(tok, out: Path) -> None:
    if getattr(tok, "_hfoq_unsaved", False):
        from ..io import atomic_dir

        with atomic_dir(out / "tokenizer_cache", overwrite=True) as tmp:
            tok.save_pretrained(tmp)
        tok._hfoq_unsaved = False


def run_training(job: TrainJobArguments, targs, *, callbacks=None, overwrite: bool = False) -> Path:
    """Train (or resume, or skip if finished) and return the run dir."""
    from ..data import load_text_splits
    from ..models import SIZE_PRESETS, build_model, count_parameters
    from .trainer import OptQuantTrainer

    if not targs.output_dir:
        raise ConfigError("output_dir", "is required", "pass --output_dir runs/NAME")
    out = Path(targs.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError("output_dir", f"{out} is a file, not a directory", "give a new directory, e.g. runs/NAME")
    if (out / "run.json").exists() and not overwrite:
        logger.info("%s is finished (run.json present): skipping", out)
        return out
    if job.model not in SIZE_PRESETS and not Path(job.model).exists() and "/" not in job.model:
        raise ConfigError("model", f"unknown size or path {job.model!r}",
                          f"use a preset ({', '.join(SIZE_PRESETS)}), a model dir or a Hub id")
    splits = load_text_splits(job.dataset, dataset_config=job.dataset_config, text_column=job.text_column)
    for split in ("train", "validation"):
        if not splits.get(split):
            raise ConfigError("dataset", f"{job.dataset!r} has no {split} text (a one-line file leaves nothing to "
                              "train on once the validation text is held out)", "give a dataset with more text")
    # Nothing is written into the run dir before the data is packed and checked (the tokenizer cache last).
    tok = _tokenizer(job, splits, out)
    model = build_model(job.model, vocab_size=len(tok), seed=job.model_seed) if job.model in SIZE_PRESETS \
        else build_model(job.model)
    n_params = count_parameters(model)
    from ..data.packing import BlockDataset, cached_blocks, pack_tokens, packed_key

    # With a tokenizer dir (a study's shared one), the packed corpus is cached beside it.
    cache = job.tokenizer if job.tokenizer and Path(job.tokenizer).is_dir() else None
    ident = {"dataset_config": job.dataset_config, "text_column": job.text_column}
    sequences_per_step = targs.per_device_train_batch_size * targs.gradient_accumulation_steps * targs.world_size

    def enough(blocks):  # checked inside make(): a corpus too small for one step is never cached
        if blocks.shape[0] < sequences_per_step:
            raise ConfigError("dataset", f"{job.dataset!r} packs into {blocks.shape[0]} blocks of {job.block_size} "
                              f"tokens, fewer than the {sequences_per_step} sequences of one optimizer step",
                              "give more text, or lower block_size / per_device_train_batch_size")
        return blocks

    val_key = packed_key(job.dataset, "validation", job.block_size, max_tokens=job.max_eval_tokens, **ident)
    # The (small, capped) validation split is packed first so that its errors also come before any write.
    val_blocks = pack_tokens(splits["validation"], tok, job.block_size, max_tokens=job.max_eval_tokens)
    train_ds = BlockDataset(cached_blocks(cache, packed_key(job.dataset, "train", job.block_size, **ident),
                                          lambda: enough(pack_tokens(splits["train"], tok, job.block_size))))
    val_ds = BlockDataset(cached_blocks(cache, val_key, lambda: val_blocks))
    if job.tokens_per_param is not None:
        per_step = targs.per_device_train_batch_size * targs.gradient_accumulation_steps * targs.world_size
        targs.max_steps = budget_steps(job.tokens_per_param, n_params, per_step, job.block_size)
    if targs.max_steps <= 0:
        targs.max_steps = math.ceil(len(train_ds) * targs.num_train_epochs /
                                    (targs.per_device_train_batch_size * targs.gradient_accumulation_steps *
                                     targs.world_size))
    enough(train_ds.blocks)  # also when it came from the cache
    _save_tokenizer_cache(tok, out)
    trainer = OptQuantTrainer(
        model=model,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tok,
        callbacks=callbacks,
        block_size=job.block_size,
        run_info={"model_size": job.model, "dataset": job.dataset, "block_size": job.block_size,
                  "tokens_per_param": job.tokens_per_param, "job": vars(job)},
    )
    resume = last_checkpoint(out)
    if resume is not None:
        logger.info("resuming %s from %s", out, resume)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return out
