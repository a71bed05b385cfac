"""Evaluate a checkpoint and write ``eval.json`` beside it (format in docs/DEVELOPING.md)."""
from __future__ import annotations

import functools
from pathlib import Path

from ..errors import ConfigError
from ..io import atomic_write_json, read_json

__all__ = ["DEGRADATION_METRIC", "degradation", "degradation_record", "evaluate_model", "run_eval"]

# A local ``evaluate`` module: loads offline by path (evaluate.load(DEGRADATION_METRIC)).
DEGRADATION_METRIC = str(Path(__file__).with_name("degradation"))


@functools.lru_cache(maxsize=1)
def _degradation_metric():
    import evaluate

    return evaluate.load(DEGRADATION_METRIC)


def degradation(before: float, after: float, *, higher_is_better: bool) -> dict:
    """``{before, after, absolute, relative, drop}`` through the local ``evaluate`` module."""
    return _degradation_metric().compute(predictions=[after], references=[before], higher_is_better=higher_is_better)


def degradation_record(base: dict, res: dict, baseline: str) -> dict:
    """Degradation of every metric both evaluations have (loss, perplexity, each task's acc_norm, the mean)."""
    deg = {"baseline": str(baseline),
           "val_loss": degradation(base["val_loss"], res["val_loss"], higher_is_better=False),
           "val_ppl": degradation(base["val_ppl"], res["val_ppl"], higher_is_better=False),
           "tasks": {}}
    for task, m in res.get("tasks", {}).items():
        b = base.get("tasks", {}).get(task, {})
        if "acc_norm" in m and "acc_norm" in b:
            deg["tasks"][task] = {"acc_norm": degradation(b["acc_norm"], m["acc_norm"], higher_is_better=True)}
    if res.get("mean_acc_norm") is not None and base.get("mean_acc_norm") is not None:
        deg["mean_acc_norm"] = degradation(base["mean_acc_norm"], res["mean_acc_norm"], higher_is_better=True)
    return deg


def evaluate_model(model, tokenizer, *, tasks=(), include_path=None, limit=None, dataset="ptb",
                   max_tokens=65536, block_size=128) -> dict:
    """Held-out loss/perplexity plus lm-eval zero-shot accuracies of an in-memory model."""
    from .harness import zero_shot
    from .perplexity import evaluate_loss

    res = evaluate_loss(model, tokenizer, dataset=dataset, max_tokens=max_tokens, block_size=block_size)
    res["tasks"] = zero_shot(model, tokenizer, list(tasks), include_path=include_path, limit=limit) if tasks else {}
    accs = [v["acc_norm"] for v in res["tasks"].values() if "acc_norm" in v]
    res["mean_acc_norm"] = sum(accs) / len(accs) if accs else None
    return res


def run_eval(model_path: str, *, tasks=(), include_path=None, limit=None, baseline: str | None = None,
             out: str | None = None, dataset="ptb", max_tokens=65536, block_size=128) -> dict:
    """Evaluate ``model_path`` (dir or Hub id); ``eval.json`` goes beside a local checkpoint or to ``out``.

    ``baseline``: the full-precision parent; its ``eval.json`` is reused when present (and
    evaluated the same way otherwise) to add the degradation record.
    """
    from ..models.limits import check_sequence_length
    from ..models.loading import load_causal_lm

    if include_path is not None and not Path(include_path).is_dir():
        raise ConfigError("include_path", f"{include_path} is not a directory", "give a dir of lm-eval task YAMLs")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError("limit", f"must be a positive number of examples per task, got {limit!r}",
                          "use e.g. --limit 100, or leave it out for every example")
    check_sequence_length(model_path, block_size, "block_size")
    if out is not None:
        from ..io import check_output_path

        check_output_path(out)
    if out is not None and Path(out).is_dir():
        raise ConfigError("out", f"{out} is a directory", "give the path of the eval.json to write")
    if baseline is not None and not Path(baseline).exists() and str(baseline).count("/") != 1:
        raise ConfigError("baseline", f"{baseline} does not exist", "give the full-precision model dir or a Hub id")
    if max_tokens is not None and max_tokens < block_size:
        raise ConfigError("max_tokens", f"{max_tokens} is fewer than one block of {block_size}",
                          f"use at least {block_size}")
    base_cached = None
    if baseline:  # a damaged cached evaluation is reported before minutes of evaluation, not after
        cached = Path(baseline) / "eval.json"
        base_cached = read_json(cached) if cached.is_file() else None
        if base_cached is not None and not (isinstance(base_cached, dict) and "val_loss" in base_cached):
            from ..errors import EnvironmentFailure

            raise EnvironmentFailure(cached, "is not an eval.json (no val_loss)",
                                     "delete it; it is rewritten by evaluating the baseline")
    model, tok = load_causal_lm(model_path)
    if tok is None:
        raise ConfigError("model", f"{model_path} has no tokenizer", "save the tokenizer with the model")
    res = {"model": str(model_path), **evaluate_model(model, tok, tasks=tasks, include_path=include_path,
                                                      limit=limit, dataset=dataset, max_tokens=max_tokens,
                                                      block_size=block_size)}
    res["degradation"] = None
    if baseline:
        base = base_cached
        if base is None or not set(tasks) <= set(base.get("tasks", {})):
            base = run_eval(baseline, tasks=tasks, include_path=include_path, limit=limit, dataset=dataset,
                            max_tokens=max_tokens, block_size=block_size)
        res["degradation"] = degradation_record(base, res, baseline)
    target = Path(out) if out else (Path(model_path) / "eval.json" if Path(model_path).is_dir() else None)
    if target is not None:
        atomic_write_json(target, res)
    return res
