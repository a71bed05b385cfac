"""``hf-optquant train CONFIG.yaml [--field value ...]``."""
from __future__ import annotations

import argparse
import dataclasses

from ..config import build_dataclasses, load_yaml, parse_overrides
from ..errors import ConfigError
from .args import OptQuantTrainingArguments
from .job import TrainJobArguments, run_training

__all__ = ["add_arguments", "run", "parse_train_config"]

_EPILOG = """Fields: any TrainingArguments field (e.g. max_steps, per_device_train_batch_size, output_dir),
plus optimizer, optimizer_kwargs, schedule, wsd_*, save_at_eval_loss, qat (or --qat.w_bits 4 ...),
and the job fields: """ + ", ".join(f.name for f in dataclasses.fields(TrainJobArguments)) + """.
Example: hf-optquant train trainer_configs/tiny.yaml --optimizer muon --max_steps 100 --output_dir runs/x"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("config", help="YAML file (see trainer_configs/)")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="--field value pairs overriding the YAML")


def parse_train_config(config_path: str, overrides: list[str] | None = None):
    cfg = load_yaml(config_path)
    over = parse_overrides(list(overrides or []))
    # Hub-facing defaults that make no sense offline; users can still set them.
    cfg.setdefault("report_to", "none")
    if not ({**cfg, **over}).get("output_dir"):  # TrainingArguments would silently use ./trainer_output
        raise ConfigError("output_dir", f"is not set in {config_path} or on the command line",
                          "pass --output_dir runs/NAME")
    return build_dataclasses((TrainJobArguments, OptQuantTrainingArguments), cfg, over, where=str(config_path))


def run(args) -> int:
    job, targs = parse_train_config(args.config, args.overrides)
    out = run_training(job, targs)
    print(f"run dir: {out}")
    return 0
