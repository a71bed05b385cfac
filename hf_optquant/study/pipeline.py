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
    import os
    import time

    from .runs import prepare_study_data

    tok_dir = cfg.tokenizer or str(Path(cfg.output_dir) / "tokenizer")
    # Under a multi-process launch (torchrun / accelerate set RANK) rank 0 trains the tokenizer and
    # tokenizes every run's tokens, once, before the first run; the other ranks wait for both.
    if int(os.environ.get("RANK", "0")) != 0 and not cfg.tokenizer:
        while not (Path(tok_dir) / "tokenizer.json").exists():
            time.sleep(5)
    tok = study_tokenizer(cfg)
    prepare_study_data(cfg, tok, wait=int(os.environ.get("RANK", "0")) != 0)
    return tok_dir


def _check_tasks(cfg: StudyConfig) -> None:
    """Unreachable or unknown evaluation tasks fail before any training starts."""
    if cfg.tasks:
        from .validate import check_tasks_reachable

        check_tasks_reachable(cfg)
        from ..eval.harness import task_manager

        task_manager(list(cfg.tasks), cfg.task_include_path, include_field="task_include_path")


def _check_config(cfg: StudyConfig) -> bool:
    """Validate ``cfg`` against the data and the study dir (writes nothing); True if it must be recorded."""
    from .guard import CONFIG_FILE, check_same_config, config_record

    path = Path(cfg.output_dir) / CONFIG_FILE
    if path.is_file():
        saved = read_json(path)
        if saved == config_record(cfg):
            return False  # checked and saved by an earlier command (each --run job would otherwise re-index lm-eval)
        check_same_config(cfg, saved)  # refuses changed settings; passes fields added since at their defaults
    _check_tasks(cfg)  # the rest of the config was validated when it was loaded (study/validate.py)
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
