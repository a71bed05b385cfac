"""The study pipeline: train every run, then collect (Common Loss, PTQ, eval, diagnose, fits, report).

Every stage writes its result atomically and is skipped when its result exists, so a
killed study started again redoes only unfinished work; the report is rebuilt from the
stored results, so one-shot and print-commands/collect give the same report.
"""
from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from ..io import atomic_write_json, read_json
from .config import StudyConfig
from .runs import all_runs, find_run, fp_runs, qat_runs, run_dir, study_tokenizer, train_run

__all__ = ["run_study", "train_one", "collect"]

logger = logging.getLogger(__name__)


def _tokenizer_dir(cfg: StudyConfig) -> str:
    from .runs import prepare_study_data

    tok = study_tokenizer(cfg)
    prepare_study_data(cfg, tok)  # every run's tokens, once, before the first run
    return cfg.tokenizer or str(Path(cfg.output_dir) / "tokenizer")


def _check_tasks(cfg: StudyConfig) -> None:
    """Unknown evaluation tasks fail before any training starts."""
    if cfg.tasks:
        from ..eval.harness import task_manager

        task_manager(list(cfg.tasks), cfg.task_include_path, include_field="task_include_path")


def _check_budget(cfg: StudyConfig) -> None:
    """A budget that ends before the first evaluation leaves no Common-Loss snapshot: refuse it up front."""
    import torch

    from ..errors import ConfigError
    from ..models import build_model, count_parameters
    from ..trainer.job import budget_steps

    # As the runs will be configured (train_overrides included), on one process.
    over = cfg.train_overrides or {}
    per_step = over.get("per_device_train_batch_size", cfg.batch_size) * over.get("gradient_accumulation_steps", 1)
    every = over.get("eval_steps", cfg.eval_every)
    for size in cfg.sizes:
        with torch.device("meta"):  # shapes only: no memory, no init
            n = count_parameters(build_model(size, vocab_size=cfg.vocab_size))
        steps = budget_steps(cfg.tokens_per_param, n, per_step, cfg.block_size)
        if steps < every:
            raise ConfigError("tokens_per_param", f"{size} ({n:,} parameters) gets {steps} steps at "
                              f"{cfg.tokens_per_param} tokens/parameter, fewer than eval_every={every}, "
                              "so it is never evaluated and has no Common-Loss checkpoint",
                              f"raise tokens_per_param to at least "
                              f"{every * per_step * cfg.block_size / n:.3g} or lower eval_every")


def _check_config(cfg: StudyConfig) -> bool:
    """Validate ``cfg`` against the data and the study dir (writes nothing); True if it must be recorded."""
    from .guard import CONFIG_FILE, check_same_config, config_record

    path = Path(cfg.output_dir) / CONFIG_FILE
    if path.is_file():
        saved = read_json(path)
        if saved == config_record(cfg):
            return False  # checked and saved by an earlier command (each --run job would otherwise re-index lm-eval)
        check_same_config(cfg, saved)  # refuses changed settings; passes fields added since at their defaults
    _check_budget(cfg)
    _check_tasks(cfg)
    return True


def _save_config(cfg: StudyConfig, needed: bool) -> None:
    from .guard import CONFIG_FILE, check_same_config, config_record

    path = Path(cfg.output_dir) / CONFIG_FILE
    if path.is_file():  # again, under the lock: another command may have recorded one meanwhile
        check_same_config(cfg, read_json(path))
    if needed:
        atomic_write_json(path, config_record(cfg))


def train_one(cfg: StudyConfig, run_id: str) -> Path:
    from ..io import clean_stale_partials
    from .guard import run_lock

    spec = find_run(cfg, run_id)
    needed = _check_config(cfg)
    with run_lock(cfg, spec):
        _save_config(cfg, needed)
        clean_stale_partials(run_dir(cfg, spec), recursive=True)
        return train_run(cfg, spec, tokenizer_dir=_tokenizer_dir(cfg), disable_tqdm=False)


def run_study(cfg: StudyConfig) -> Path:
    from ..io import clean_stale_partials
    from .guard import run_lock, study_lock

    needed = _check_config(cfg)
    with study_lock(cfg):
        _save_config(cfg, needed)
        clean_stale_partials(cfg.output_dir, recursive=True)  # left by a killed command
        tok_dir = _tokenizer_dir(cfg)
        specs = fp_runs(cfg) + qat_runs(cfg)  # QAT after FP: it uses the FP sweep's lr
        from .analysis import analysis_steps

        steps = analysis_steps(cfg)
        bar = tqdm(total=len(specs) + len(steps), desc=f"study {cfg.name}", unit="step", position=0)
        for spec in specs:
            bar.set_postfix_str(f"train {spec.run_id}")
            done = (run_dir(cfg, spec) / "run.json").exists()
            with run_lock(cfg, spec):
                train_run(cfg, spec, tokenizer_dir=tok_dir)
            if not done:
                logger.info("trained %s", spec.run_id)
            bar.update(1)
        report = _collect(cfg, bar=bar)
        bar.close()
    return report


def collect(cfg: StudyConfig, bar=None) -> Path:
    """Results and report from finished run dirs (one study command at a time per output dir)."""
    from .guard import CONFIG_FILE, check_same_config, study_lock

    with study_lock(cfg):
        if (Path(cfg.output_dir) / CONFIG_FILE).is_file():
            check_same_config(cfg, read_json(Path(cfg.output_dir) / CONFIG_FILE))
        return _collect(cfg, bar=bar)


def _collect(cfg: StudyConfig, bar=None) -> Path:
    from .analysis import analysis_steps
    from .report import write_report

    missing = [s.run_id for s in all_runs(cfg) if not (run_dir(cfg, s) / "run.json").exists()]
    if missing:
        from ..errors import ConfigError

        raise ConfigError("collect", f"{len(missing)} runs are not finished (e.g. {missing[0]})",
                          "run the printed commands (or `hf-optquant study CONFIG`) first")
    own_bar = bar is None
    steps = analysis_steps(cfg)
    if own_bar:
        bar = tqdm(total=len(steps), desc=f"collect {cfg.name}", unit="step")
    for name, fn in steps:
        bar.set_postfix_str(name)
        fn()
        bar.update(1)
    if own_bar:
        bar.close()
    return write_report(cfg)
