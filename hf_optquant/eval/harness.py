"""Zero-shot accuracy through lm-evaluation-harness (paper: PIQA, HellaSwag, ARC-Easy, acc_norm).

Online, task names resolve to the harness's own tasks; offline, pass ``include_path`` with
local task YAMLs (tests/data/lm_eval_tasks has a small one).
"""
from __future__ import annotations

from ..errors import ConfigError

__all__ = ["PAPER_TASKS", "zero_shot"]

PAPER_TASKS = ("piqa", "hellaswag", "arc_easy")


def zero_shot(model, tokenizer, tasks: list[str], *, include_path: str | None = None, limit: int | None = None,
              batch_size: int = 8) -> dict:
    """``{task: {"acc": .., "acc_norm": ..}}`` from ``lm_eval.simple_evaluate``."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=include_path) if include_path else TaskManager()
    unknown = [t for t in tasks if t not in tm.all_tasks]
    if unknown:
        raise ConfigError("tasks", f"unknown lm-eval task(s) {unknown}",
                          "use harness task names (online) or --include-path DIR with local task YAMLs")
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(next(model.parameters()).device))
    res = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=tm, limit=limit, log_samples=False,
                                  verbosity="ERROR")
    out = {}
    for task in tasks:
        r = res["results"][task]
        out[task] = {k.split(",")[0]: v for k, v in r.items() if k.startswith(("acc,", "acc_norm,"))}
    return out
