"""Evaluate a checkpoint and write ``eval.json`` beside it (format in docs/DEVELOPING.md)."""
from __future__ import annotations

from pathlib import Path

from ..io import atomic_write_json, read_json

__all__ = ["DEGRADATION_METRIC", "degradation", "evaluate_model", "run_eval"]

DEGRADATION_METRIC = str(Path(__file__).with_name("degradation") / "degradation.py")


def degradation(before: float, after: float, *, higher_is_better: bool) -> dict:
    import evaluate

    metric = evaluate.load(DEGRADATION_METRIC)
    return metric.compute(predictions=[after], references=[before], higher_is_better=higher_is_better)


def evaluate_model(model, tokenizer, *, tasks=(), include_path=None, limit=None, dataset="ptb",
                   max_tokens=65536, block_size=128) -> dict:
    from .harness import zero_shot
    from .perplexity import evaluate_loss

    res = evaluate_loss(model, tokenizer, dataset=dataset, max_tokens=max_tokens, block_size=block_size)
    res["tasks"] = zero_shot(model, tokenizer, list(tasks), include_path=include_path, limit=limit) if tasks else {}
    accs = [v["acc_norm"] for v in res["tasks"].values() if "acc_norm" in v]
    res["mean_acc_norm"] = sum(accs) / len(accs) if accs else None
    return res


def run_eval(model_path: str, *, tasks=(), include_path=None, limit=None, baseline: str | None = None,
             out: str | None = None, dataset="ptb", max_tokens=65536) -> dict:
    from ..ptq.run import load_causal_lm

    model, tok = load_causal_lm(model_path)
    res = {"model": str(model_path), **evaluate_model(model, tok, tasks=tasks, include_path=include_path,
                                                      limit=limit, dataset=dataset, max_tokens=max_tokens)}
    res["degradation"] = None
    if baseline:
        base = read_json(Path(baseline) / "eval.json") if (Path(baseline) / "eval.json").exists() else \
            run_eval(baseline, tasks=tasks, include_path=include_path, limit=limit, dataset=dataset,
                     max_tokens=max_tokens)
        deg = {"baseline": str(baseline),
               "val_loss": degradation(base["val_loss"], res["val_loss"], higher_is_better=False)}
        if res.get("mean_acc_norm") is not None and base.get("mean_acc_norm") is not None:
            deg["mean_acc_norm"] = degradation(base["mean_acc_norm"], res["mean_acc_norm"], higher_is_better=True)
        res["degradation"] = deg
    target = Path(out) if out else (Path(model_path) / "eval.json" if Path(model_path).is_dir() else None)
    if target is not None:
        atomic_write_json(target, res)
    return res
