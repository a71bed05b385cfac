"""Training stage of a study: enumerate the runs, train each (resumably), pick lrs from sweeps."""
from __future__ import annotations

import shlex
from pathlib import Path

from ..errors import ConfigError
from ..io import read_json
from .config import RunSpec, StudyConfig

__all__ = ["study_tokenizer", "study_data_dir", "prepare_study_data", "fp_runs", "qat_runs", "all_runs", "run_dir",
           "train_arguments", "train_run", "best_lr", "train_command", "collect_command", "find_run"]


def study_tokenizer(cfg: StudyConfig):
    """One tokenizer for every run of the study, trained once and kept in the study dir."""
    from ..data import load_or_train_tokenizer
    from ..data.tokenizer import train_tokenizer_on_sample

    if cfg.tokenizer:
        return load_or_train_tokenizer(cfg.tokenizer)
    # A bounded sample of the training text (data.tokenizer_sample_chars), recorded beside the tokenizer.
    return train_tokenizer_on_sample(cfg.data, cfg.vocab_size, Path(cfg.output_dir) / "tokenizer")


def study_data_dir(cfg: StudyConfig) -> Path:
    """Token shards shared by every run of the study."""
    return Path(cfg.data.cache_dir or Path(cfg.output_dir) / "data")


def prepare_study_data(cfg: StudyConfig, tokenizer, *, progress: bool = True, wait: bool = False):
    """Tokenize once, before any run, the tokens of the largest run (plus validation); every run reads a
    prefix of the same shards. Padded by 1% so a run launched on more devices (its budget rounded up to
    whole global batches) is still served by this store. ``wait``: another process builds it; poll."""
    import math
    import time

    from ..data.prepare import prepare_tokens
    from ..data.source import source_identity
    from ..data.store import find_store, store_identity
    from .plan import study_budget_tokens

    need = max(study_budget_tokens(cfg, len(tokenizer)).values())
    need = max(need, math.ceil(need * 1.01)) if not cfg.data.allow_epochs else need
    if wait:
        identity = store_identity(source_identity(cfg.data), tokenizer, cfg.max_eval_tokens)
        while (store := find_store(study_data_dir(cfg), identity, need)) is None:
            time.sleep(10)
        return store
    return prepare_tokens(cfg.data, tokenizer, train_tokens=need, eval_tokens=cfg.max_eval_tokens,
                          cache_dir=study_data_dir(cfg), progress=progress)


def fp_runs(cfg: StudyConfig) -> list[RunSpec]:
    out = []
    for size in cfg.sizes:
        for opt in cfg.optimizers:
            # A swept lr is part of the run id; a fixed lr (or the preset's) is not.
            for lr in cfg.lr_grid.get(opt) or [None]:
                out.append(RunSpec(optimizer=opt, size=size, precision="full", lr=lr))
    return out


def qat_runs(cfg: StudyConfig) -> list[RunSpec]:
    if "qat" not in cfg.precisions:
        return []
    return [RunSpec(optimizer=o, size=s, precision="qat", lr=None) for s in cfg.sizes for o in cfg.optimizers]


def all_runs(cfg: StudyConfig) -> list[RunSpec]:
    return fp_runs(cfg) + qat_runs(cfg)


def run_dir(cfg: StudyConfig, spec: RunSpec) -> Path:
    return Path(cfg.output_dir) / "runs" / spec.run_id


def find_run(cfg: StudyConfig, run_id: str) -> RunSpec:
    for spec in all_runs(cfg):
        if spec.run_id == run_id:
            return spec
    raise ConfigError("run", f"no run {run_id!r} in this study",
                      "use an id printed by --print-commands, e.g. " + all_runs(cfg)[0].run_id)


def best_lr(cfg: StudyConfig, optimizer: str, size: str) -> float | None:
    """The full-precision lr with the lowest final eval loss (the sweep's winner), or the fixed lr."""
    grid = cfg.lr_grid.get(optimizer)
    if not grid:
        return cfg.learning_rates.get(optimizer)
    best = None
    for lr in grid:
        f = run_dir(cfg, RunSpec(optimizer=optimizer, size=size, precision="full", lr=lr)) / "run.json"
        if not f.exists():
            raise ConfigError("run", f"the lr sweep of {optimizer} at {size} is not finished ({f.parent.name})",
                              "train the full-precision runs before the QAT runs")
        loss = read_json(f)["final_eval_loss"]
        if best is None or loss < best[0]:
            best = (loss, lr)
    return best[1]


def _lr(cfg: StudyConfig, spec: RunSpec) -> float | None:
    if spec.precision == "qat":
        return best_lr(cfg, spec.optimizer, spec.size)
    return spec.lr if spec.lr is not None else cfg.learning_rates.get(spec.optimizer)


def train_arguments(cfg: StudyConfig, spec: RunSpec, *, tokenizer_dir: str | None = None, lr: float | None = None,
                    disable_tqdm: bool = True) -> tuple[dict, dict]:
    """``(TrainJobArguments kwargs, OptQuantTrainingArguments kwargs)`` of one run; ``lr`` defaults to the
    run's own (a QAT run's comes from the finished sweep). Also what the config is validated with at load."""
    out = run_dir(cfg, spec)
    tok_dir = tokenizer_dir or cfg.tokenizer or str(Path(cfg.output_dir) / "tokenizer")
    data = {k: v for k, v in cfg.data.to_dict().items() if k not in ("dataset", "dataset_config", "text_column")}
    data["cache_dir"] = str(study_data_dir(cfg))
    job = dict(model=spec.size, tokenizer=tok_dir, vocab_size=cfg.vocab_size, dataset=cfg.dataset,
               block_size=cfg.block_size, tokens_per_param=cfg.tokens_per_param,
               max_eval_tokens=cfg.max_eval_tokens, model_seed=cfg.seed, dataset_config=cfg.data.dataset_config,
               text_column=cfg.data.text_column, data=data)
    targs = dict(
        output_dir=str(out),
        optimizer=spec.optimizer,
        optimizer_kwargs=dict(cfg.optimizer_kwargs.get(spec.optimizer, {})),
        learning_rate=lr if lr is not None else _lr(cfg, spec),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        eval_strategy="steps",
        eval_steps=cfg.eval_every,
        save_strategy="steps",
        save_steps=cfg.eval_every,
        save_total_limit=1,
        logging_steps=max(1, cfg.eval_every // 4),
        report_to="none",
        seed=cfg.seed,
        disable_tqdm=disable_tqdm,
        snapshot_at_eval=spec.precision == "full" and cfg.common_loss is None,
        save_at_eval_loss=cfg.common_loss if spec.precision == "full" else None,
        qat=cfg.qat.to_dict() if spec.precision == "qat" else None,
    )
    targs.update(cfg.train_overrides)
    return job, targs


def train_run(cfg: StudyConfig, spec: RunSpec, *, tokenizer_dir: str | None = None, disable_tqdm: bool = True) -> Path:
    """Train one run of the study (skip if finished, resume if interrupted)."""
    from ..trainer import OptQuantTrainingArguments
    from ..trainer.job import TrainJobArguments, run_training

    out = run_dir(cfg, spec)
    if (out / "run.json").exists():
        return out
    job, targs = train_arguments(cfg, spec, tokenizer_dir=tokenizer_dir, disable_tqdm=disable_tqdm)
    return run_training(TrainJobArguments(**job), OptQuantTrainingArguments(**targs))


def _set_words(sets) -> list[str]:
    # The --set overrides of the printing command, so each printed line trains what it printed.
    return [w for s in sets or () for w in ("--set", s.lstrip("-"))]


def train_command(cfg_path: str, spec: RunSpec, launcher: str = "python", *, nodes: int = 1, procs_per_node: int = 1,
                accelerate_config: str | None = None, sets=()) -> str:
    from .launch import launch_prefix

    prefix = launch_prefix(launcher, nodes=nodes, procs_per_node=procs_per_node,
                           accelerate_config=accelerate_config, run_id=spec.run_id)
    # torchrun's own parser sees "--run" and rejects it as ambiguous (--run-path): give it the long alias.
    flag = "--run-id" if launcher == "torchrun" else "--run"
    words = ["study", cfg_path, flag, spec.run_id, *_set_words(sets)]
    return " ".join(prefix + [shlex.quote(x) for x in words])


def collect_command(cfg_path: str, sets=()) -> str:
    return " ".join(shlex.quote(x) for x in ["hf-optquant", "study", cfg_path, "--collect", *_set_words(sets)])
