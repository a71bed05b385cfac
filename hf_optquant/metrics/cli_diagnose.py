"""``hf-optquant diagnose MODEL_DIR --w-bits 4 --a-bits 4 [--method rtn] --out DIR`` (every ``ptq`` flag of the
PTQ setting, then the diagnosis's own)."""
from __future__ import annotations

import argparse
import json

from ..ptq.cli import add_ptq_arguments, ptq_config
from .settings import add_diagnose_arguments, diagnose_config

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model dir (or Hub repo id, online)")
    p.add_argument("--out", required=True, help="output dir: summary.json, layers.parquet/.csv, outliers.csv, PNGs")
    add_ptq_arguments(p, method_help="PTQ method whose error is decomposed: rtn or gptq")
    add_diagnose_arguments(p)  # --n-batches, --batch-size, --seq-len, --modules, --norm, --outliers, --dataset, --split
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (atomically)")


def run(args) -> int:
    from .diagnose import diagnose_model_dir

    s = diagnose_model_dir(args.model, args.out, ptq_config(args), diagnose_config(args), overwrite=args.overwrite)
    print(json.dumps({k: s[k] for k in ("mmr", "kurtosis", "r_l", "r_l_module", "val_loss_fp", "val_loss_q")}))
    return 0
