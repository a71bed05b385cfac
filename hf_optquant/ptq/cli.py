"""``hf-optquant ptq MODEL --method rtn|gptq --w-bits 4 --a-bits 4 --granularity row|group:128 --out DIR``."""
from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..quant.arguments import add_scheme_arguments, scheme_kwargs
from .config import PTQConfig

__all__ = ["add_arguments", "add_ptq_arguments", "ptq_config", "run"]


def add_ptq_arguments(p: argparse.ArgumentParser, method_help: str = "rtn (the paper's) or gptq") -> None:
    """The PTQConfig flags every quantizing command takes (ptq, diagnose): --method, the scheme's flags
    (generated from QuantScheme), --lm-head and GPTQ's --act-order, --damp, --block-size."""
    p.add_argument("--method", default="rtn", help=method_help)
    add_scheme_arguments(p)
    p.add_argument("--lm-head", action="store_true", help="also quantize the LM head (unties it)")
    p.add_argument("--act-order", action=argparse.BooleanOptionalAction, default=True,
                   help="GPTQ: columns by decreasing Hessian diagonal (default on; --no-act-order for the plain sweep)")
    p.add_argument("--damp", type=float, default=0.01, help="GPTQ damping (fraction of mean diag H)")
    p.add_argument("--block-size", type=int, default=128, help="GPTQ error-feedback block size")


def ptq_config(args) -> PTQConfig:
    return PTQConfig(method=args.method, **scheme_kwargs(args), lm_head=args.lm_head, act_order=args.act_order,
                     damp=args.damp, block_size=args.block_size)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model dir or Hub repo id")
    p.add_argument("--out", required=True, help="output checkpoint dir (compressed-tensors)")
    add_ptq_arguments(p)
    p.add_argument("--calibration", default="ptb",
                   help="GPTQ calibration text (its train split, streamed): ptb, a local .txt/.jsonl/.parquet/.csv "
                        "file or dir, or a Hub dataset")
    p.add_argument("--n-calibration", type=int, default=128, help="GPTQ calibration sequences")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per calibration sequence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="hf_optquant", choices=("hf_optquant", "optimum"),
                   help="hf_optquant (compressed-tensors checkpoint) or optimum (GPTQ format; needs [gptq] extra)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (atomically)")


def run(args) -> int:
    cfg = ptq_config(args)
    if args.backend == "optimum":
        from transformers import AutoTokenizer

        from ..data.blocks import calibration_blocks
        from .optimum_backend import run_optimum_gptq

        if cfg.method != "gptq":
            raise ConfigError("method", "the optimum backend runs GPTQ only", "pass --method gptq")
        try:  # the tokenizer only: optimum loads the model itself
            tok = AutoTokenizer.from_pretrained(args.model)
        except (OSError, ValueError) as exc:
            why = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise ConfigError("model", f"cannot load a tokenizer from {args.model!r} ({why})",
                              "give a model dir saved with its tokenizer, or a Hub id") from None
        ids = calibration_blocks(tok, args.calibration, args.n_calibration, args.seq_len, args.seed)
        texts = [tok.decode(row) for row in ids]
        out = run_optimum_gptq(args.model, args.out, cfg, calibration_texts=texts, overwrite=args.overwrite)
    else:
        from .run import run_ptq

        out = run_ptq(args.model, args.out, cfg, calibration=args.calibration, n_calibration=args.n_calibration,
                      seq_len=args.seq_len, overwrite=args.overwrite, seed=args.seed)
    print(f"quantized checkpoint: {out}")
    return 0

