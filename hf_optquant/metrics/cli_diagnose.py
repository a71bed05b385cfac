"""``hf-optquant diagnose MODEL_DIR --w-bits 4 --a-bits 4 [--method rtn] --out DIR`` (every ``ptq`` flag of the
PTQ setting, then the diagnosis's own)."""
from __future__ import annotations

import argparse
import json

from ..ptq.cli import add_ptq_arguments, ptq_config

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model dir (or Hub repo id, online)")
    p.add_argument("--out", required=True, help="output dir: summary.json, layers.parquet/.csv, outliers.csv, PNGs")
    add_ptq_arguments(p, method_help="PTQ method whose error is decomposed: rtn or gptq")
    p.add_argument("--n-batches", type=int, default=4, help="evaluation batches")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per batch")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per sequence")
    p.add_argument("--modules", default="block",
                   help="block (each decoder layer, norm, head), linear, sublayer (attention, MLP, norms), all, "
                        "or comma-separated name suffixes")
    p.add_argument("--norm", default="tensor", help="tensor (norms over the batch) or token (per-token ratios)")
    p.add_argument("--outliers", default="residual",
                   help="where MMR and kurtosis are measured: residual (the residual stream, each decoder block's "
                        "input and the last block's output, as the paper's authors measure it), linear (every "
                        "linear layer's input), both, or none; the model-level value is the median over layers")
    p.add_argument("--dataset", default="ptb",
                   help="text of the evaluation batches and of GPTQ's calibration (its train split): ptb (offline), "
                        "a local file/dir or a Hub dataset, streamed")
    p.add_argument("--split", default="validation")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (atomically)")


def run(args) -> int:
    from .diagnose import diagnose_model_dir

    s = diagnose_model_dir(args.model, args.out, ptq_config(args), n_batches=args.n_batches,
                           seq_len=args.seq_len, batch_size=args.batch_size, modules=args.modules, norm=args.norm,
                           dataset=args.dataset, split=args.split, overwrite=args.overwrite,
                           outliers=args.outliers)
    print(json.dumps({k: s[k] for k in ("mmr", "kurtosis", "r_l", "r_l_module", "val_loss_fp", "val_loss_q")}))
    return 0
