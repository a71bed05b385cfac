"""``hf-optquant eval MODEL [--tasks piqa,hellaswag,arc_easy] [--include-path DIR] [--baseline DIR]``."""
from __future__ import annotations

import argparse
import json

from .run import run_eval

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model dir (eval.json is written inside) or Hub id")
    p.add_argument("--tasks", default="", help="comma-separated lm-eval tasks, e.g. piqa,hellaswag,arc_easy")
    p.add_argument("--include-path", default=None, help="directory of local lm-eval task YAMLs (offline)")
    p.add_argument("--limit", type=int, default=None, help="examples per task (quick checks)")
    p.add_argument("--baseline", default=None, help="full-precision parent: adds the degradation record")
    p.add_argument("--dataset", default="ptb",
                   help="held-out text for loss/perplexity: ptb (offline), a local file/dir or a Hub dataset, "
                        "streamed (no validation split: the start of its train split, what training holds out)")
    p.add_argument("--max-tokens", type=int, default=65536, help="held-out tokens for loss/perplexity")
    p.add_argument("--block-size", type=int, default=128, help="tokens per evaluation block")
    p.add_argument("--out", default=None, help="eval.json path (default: inside the model dir; needed for a Hub id)")


def run(args) -> int:
    tasks = [t for t in args.tasks.split(",") if t]
    res = run_eval(args.model, tasks=tasks, include_path=args.include_path, limit=args.limit,
                   baseline=args.baseline, out=args.out, dataset=args.dataset, max_tokens=args.max_tokens,
                   block_size=args.block_size)
    print(json.dumps({k: v for k, v in res.items() if k != "model"}, indent=2, default=str))
    return 0
