"""``hf-optquant ptq MODEL --method rtn|gptq --w-bits 4 --a-bits 4 --granularity row --out DIR``."""
from __future__ import annotations

import argparse

from .config import PTQConfig
from .run import run_ptq

__all__ = ["add_arguments", "run"]


def _bits(v: str):
    return None if v.lower() in ("none", "16", "fp") else int(v)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model dir or Hub id")
    p.add_argument("--method", default="rtn", help="rtn (paper) or gptq")
    p.add_argument("--w-bits", type=int, default=4)
    p.add_argument("--a-bits", type=_bits, default=4, help="4, 8 or none")
    p.add_argument("--granularity", default="row", help="row, group:G or tensor")
    p.add_argument("--lm-head", action="store_true", help="also quantize the LM head")
    p.add_argument("--act-order", action="store_true", help="GPTQ act-order")
    p.add_argument("--damp", type=float, default=0.01)
    p.add_argument("--calibration", default="ptb", help="ptb or a text file (GPTQ)")
    p.add_argument("--n-calibration", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")


def run(args) -> int:
    cfg = PTQConfig(method=args.method, w_bits=args.w_bits, a_bits=args.a_bits, granularity=args.granularity,
                    lm_head=args.lm_head, act_order=args.act_order, damp=args.damp)
    out = run_ptq(args.model, args.out, cfg, calibration=args.calibration, n_calibration=args.n_calibration,
                  seq_len=args.seq_len, overwrite=args.overwrite)
    print(f"quantized checkpoint: {out}")
    return 0
