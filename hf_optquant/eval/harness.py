"""Zero-shot accuracy through lm-evaluation-harness (paper: PIQA, HellaSwag, ARC-Easy, acc_norm).

Online, task names resolve to the harness's own tasks (which download their datasets from
the Hub); offline, pass ``include_path`` with local task YAMLs (tests/data/lm_eval_tasks has
a small one).
"""
from __future__ import annotations

import functools
from pathlib import Path

from ..errors import ConfigError

__all__ = ["PAPER_TASKS", "task_manager", "zero_shot"]

PAPER_TASKS = ("piqa", "hellaswag", "arc_easy")


@functools.lru_cache(maxsize=8)
def _manager(include_path: str | None, include_defaults: bool):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path, include_defaults=include_defaults)


def task_manager(tasks: list[str], include_path: str | None = None, *, include_field: str = "include_path"):
    """A TaskManager that knows ``tasks``. Indexing the harness's thousands of built-in YAMLs
    takes about a minute on a small CPU, so local tasks are looked up alone first. ``include_field`` names
    the caller's setting in the error for a missing directory."""
    if include_path and not Path(include_path).is_dir():
        raise ConfigError(include_field, f"{include_path} is not a directory",
                          "point it at a directory of lm-eval task YAMLs, or remove it")
    if include_path:
        local = _manager(str(include_path), False)
        if all(t in local.all_tasks for t in tasks):
            return local
    tm = _manager(str(include_path) if include_path else None, True)
    unknown = [t for t in tasks if t not in tm.all_tasks]
    if unknown:
        raise ConfigError("tasks", f"unknown lm-eval task(s) {unknown}",
                          "use harness task names (e.g. piqa,hellaswag,arc_easy) or --include-path DIR with local YAMLs")
    return tm


def zero_shot(model, tokenizer, tasks: list[str], *, include_path: str | None = None, limit: int | None = None,
              batch_size: int = 8) -> dict:
    """``{task: {"acc": .., "acc_norm": ..}}`` from ``lm_eval.simple_evaluate`` on an in-memory model."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    tm = task_manager(list(tasks), include_path)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
              device=str(next(model.parameters()).device))
    res = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=tm, limit=limit, log_samples=False,
                                  verbosity="ERROR")
    out = {}
    for task in tasks:
        r = res["results"][task]
        out[task] = {k.split(",")[0]: v for k, v in r.items() if k.startswith(("acc,", "acc_norm,"))}
    return out
