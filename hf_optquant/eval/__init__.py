"""Evaluation: loss/perplexity, lm-eval zero-shot, degradation (a local ``evaluate`` metric)."""
from .harness import PAPER_TASKS, zero_shot
from .perplexity import evaluate_loss
from .run import DEGRADATION_METRIC, degradation, evaluate_model, run_eval

__all__ = ["PAPER_TASKS", "zero_shot", "evaluate_loss", "DEGRADATION_METRIC", "degradation", "evaluate_model",
           "run_eval"]
