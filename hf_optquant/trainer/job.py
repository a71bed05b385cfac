"""One training run from configs: model + data + ``OptQuantTrainingArguments`` -> a run dir.

Used by ``hf-optquant train`` and by the study pipeline. A finished run (``run.json``
present) is skipped; an interrupted one resumes from its last checkpoint.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..data.config import DataConfig
from ..errors import ConfigError

__all__ = ["TrainJobArguments", "budget_steps", "run_training", "finish_run", "last_checkpoint"]

logger = logging.getLogger(__name__)


@dataclass
class TrainJobArguments:
    model: str = field(default="tiny-2", metadata={"help": "Size preset (e.g. tiny-2, 125M) or a model dir / Hub id."})
    tokenizer: str | None = field(
        default=None, metadata={"help": "Tokenizer dir / Hub id; default: for a preset, a BPE trained on the data."}
    )
    vocab_size: int | None = field(
        default=None, metadata={"help": "Vocabulary of the locally trained BPE; default: the preset's."}
    )
    dataset: str = field(default="ptb", metadata={"help": "'ptb' (offline default), a local file/dir, or a Hub dataset."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    block_size: int = field(default=128, metadata={"help": "Tokens per training sequence (packed)."})
    tokens_per_param: float | None = field(
        default=None,
        metadata={"help": "Token budget as a multiple of the parameter count (paper: 20); sets max_steps."},
    )
    max_eval_tokens: int | None = field(default=65536, metadata={"help": "Cap on validation tokens."})
    model_seed: int = field(default=0, metadata={"help": "Seed of the initial weights of a preset model."})
    data: dict | str | None = field(
        default=None,
        metadata={"help": "Data options (hf_optquant.data.DataConfig), e.g. {token_column: tokens, allow_epochs: "
                  "false, tokenizer_sample_chars: 20000000, cache_dir: DIR}; or --data.token_column tokens."},
    )

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
        top = {"dataset": self.dataset, "dataset_config": self.dataset_config, "text_column": self.text_column}
        cfg = DataConfig.from_block(self.data, **top)
        self.data = {k: v for k, v in cfg.to_dict().items() if k not in top}

    def data_config(self) -> DataConfig:
        return DataConfig.from_block(self.data, dataset=self.dataset, dataset_config=self.dataset_config,
                                     text_column=self.text_column)


def budget_steps(tokens_per_param: float, n_params: int, sequences_per_step: int, block_size: int) -> int:
    """Optimizer steps for a budget of ``tokens_per_param`` tokens per parameter (at least one)."""
    return max(1, math.ceil(tokens_per_param * n_params / (sequences_per_step * block_size)))


def last_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = [p for p in Path(output_dir).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    ckpts = [p for p in ckpts if (p / "trainer_state.json").exists()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[-1])) if ckpts else None


def _tokenizer(job: TrainJobArguments, data_cfg: DataConfig, out: Path):
    from ..data import load_or_train_tokenizer
    from ..data.tokenizer import train_tokenizer_on_sample
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
    return train_tokenizer_on_sample(data_cfg, vocab, out / "tokenizer_cache")


def _datasets(job: TrainJobArguments, data_cfg: DataConfig, tok, targs, per_step: int, out: Path):
    """Train/validation ``TokenBlocks`` over the token store holding the budget's tokens (tokenized once,
    by the main process first; the others then find the store)."""
    from ..data.blocks import TokenBlocks, store_blocks
    from ..data.prepare import prepare_tokens

    need = targs.max_steps * per_step * job.block_size if targs.max_steps > 0 else None
    cache = data_cfg.cache_dir or str(out / "tokens")
    with targs.main_process_first(desc="tokenize", local=False):
        store = prepare_tokens(data_cfg, tok, train_tokens=need, eval_tokens=job.max_eval_tokens, cache_dir=cache,
                               progress=not targs.disable_tqdm)
    train_ds = store_blocks(store, "train", job.block_size)
    have = len(train_ds) * job.block_size
    info = {"store": str(store.path), "train_tokens_available": store.n_tokens("train"),
            "exhausted": store.exhausted, "budget_tokens": need, "epochs": 1.0 if need else None,
            "dtype": store.index["dtype"]}
    if need is not None:
        if have < need:
            field_ = "tokens_per_param" if job.tokens_per_param is not None else "max_steps"
            if not data_cfg.allow_epochs:
                raise ConfigError(field_, f"{job.dataset!r} has {have:,} training tokens in {job.block_size}-token "
                                  f"blocks, fewer than the budget's {need:,}",
                                  "lower the budget, use a larger corpus, or set data.allow_epochs: true to repeat it")
            info["epochs"] = need / have
            logger.warning("the budget repeats the corpus %.2f times (data.allow_epochs)", info["epochs"])
        else:
            # Exactly the budget's blocks: one epoch is the budget, whatever the store holds beyond it.
            train_ds = TokenBlocks(store.tokens("train"), job.block_size, max_blocks=need // job.block_size)
    val_ds = store_blocks(store, "validation", job.block_size, max_tokens=job.max_eval_tokens)
    return train_ds, val_ds, info


def run_training(job: TrainJobArguments, targs, *, callbacks=None, overwrite: bool = False) -> Path:
    """Train (or resume, or skip if finished) and return the run dir."""
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
    data_cfg = job.data_config()
    # Everything above validates input. The tokenizer and token caches below are written into the run dir
    # while the data is checked (too little text, a budget the corpus cannot fill): if a check fails, a run
    # dir this call created is removed again, so a refused command leaves nothing behind.
    created = not out.exists()
    try:
        tok = _tokenizer(job, data_cfg, out)
        model = build_model(job.model, vocab_size=len(tok), seed=job.model_seed) if job.model in SIZE_PRESETS \
            else build_model(job.model)
        n_params = count_parameters(model)
        per_step = targs.per_device_train_batch_size * targs.gradient_accumulation_steps * targs.world_size
        if job.tokens_per_param is not None:
            targs.max_steps = budget_steps(job.tokens_per_param, n_params, per_step, job.block_size)
        train_ds, val_ds, data_info = _datasets(job, data_cfg, tok, targs, per_step, out)
        if len(train_ds) < per_step:
            raise ConfigError("dataset", f"{job.dataset!r} packs into {len(train_ds)} blocks of {job.block_size} "
                              f"tokens, fewer than the {per_step} sequences of one optimizer step",
                              "give more text, or lower block_size / per_device_train_batch_size")
        if len(val_ds) < 1:
            raise ConfigError("dataset", f"{job.dataset!r} has no validation block of {job.block_size} tokens",
                              "give more text, or a smaller block_size")
    except (ConfigError, KeyboardInterrupt):
        if created and targs.process_index == 0:
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise
    if targs.max_steps <= 0:
        targs.max_steps = math.ceil(len(train_ds) * targs.num_train_epochs / per_step)
    trainer = OptQuantTrainer(
        model=model,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tok,
        callbacks=callbacks,
        block_size=job.block_size,
        run_info={"model_size": job.model, "dataset": job.dataset, "job": vars(job), "data": data_info},
        record_on_train_end=False,  # written below, last, so a run dir with run.json is complete
    )
    resume = last_checkpoint(out)
    if resume is not None:
        logger.info("resuming %s from %s", out, resume)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finish_run(trainer)
    return out


def finish_run(trainer) -> None:
    """Final evaluation (unless the run just evaluated at its last step), final model, then ``run.json``."""
    evals = [h.get("step") for h in trainer.state.log_history if "eval_loss" in h]
    if trainer.eval_dataset is not None and (not evals or evals[-1] != trainer.state.global_step):
        trainer.evaluate()
    trainer.save_model(trainer.args.output_dir)
    if trainer.is_world_process_zero():
        trainer.write_run_record()
