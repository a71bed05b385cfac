"""``hf-optquant train CONFIG.yaml [--field value ...]``."""
from __future__ import annotations

import argparse

from .job import run_training
from .parsing import fields_help, parse_train_config

__all__ = ["add_arguments", "run", "parse_train_config"]

_DESCRIPTION = """Train one run: a YAML file of fields, then --field value flags that override it (parsed by
transformers.HfArgumentParser, as TRL and the transformers examples do). Dict fields take JSON:
  --optimizer_kwargs '{"momentum": 0.9}'  --qat '{"quantizer": "quest", "w_bits": 4, "a_bits": 4}'
(--qat.w_bits 4 sets one key of a dict field; a shorthand of this command only).
Example: hf-optquant train trainer_configs/tiny.yaml --optimizer muon --max_steps 100 --output_dir runs/x"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = _DESCRIPTION
    parser.epilog = "fields (YAML keys or --flags):\n\n" + fields_help()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("config", help="YAML file of fields (examples in trainer_configs/)")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="--field value pairs overriding the YAML")


def run(args) -> int:
    job, targs = parse_train_config(args.config, args.overrides)
    out = run_training(job, targs)
    print(f"run dir: {out}")
    return 0
