"""``hf-optquant train`` arguments as TRL parses them: a YAML file, then ``--field value`` flags read by
``transformers.HfArgumentParser`` (typed, with every field's help), dict fields as JSON.

The flags given on the command line win over the YAML. ``--qat.w_bits 4`` (one key of a dict
field) is an ``hf-optquant train`` shorthand; ``--qat '{"w_bits": 4}'`` (JSON) works here and in any
script that parses ``OptQuantTrainingArguments`` with ``HfArgumentParser``.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from transformers import HfArgumentParser

from ..config import build_dataclasses, load_yaml, parse_overrides
from ..errors import ConfigError, unknown_key_error
from .args import OptQuantTrainingArguments
from .job import TrainJobArguments

__all__ = ["TRAIN_TYPES", "FieldsParser", "fields_help", "parse_train_config"]

TRAIN_TYPES = (TrainJobArguments, OptQuantTrainingArguments)


class FieldsParser(HfArgumentParser):
    """``HfArgumentParser`` whose errors are one ``ConfigError`` line (argparse would print usage and exit)."""

    def error(self, message: str):
        found = re.search(r"argument (--[\w.-]+)", message)
        name = found.group(1).lstrip("-").replace("-", "_") if found else "arguments"
        raise ConfigError(name, message.split(": ", 1)[-1] if found else message,
                          "see `hf-optquant train --help` for the fields, their types and choices")


def _parser() -> FieldsParser:
    return FieldsParser(TRAIN_TYPES, prog="hf-optquant train CONFIG.yaml", add_help=False,
                        allow_abbrev=False)


def fields_help() -> str:
    """Every field with its type, default and help text (the body of ``hf-optquant train --help``)."""
    text = _parser().format_help()
    return text.split("\n\n", 1)[-1]  # drop HfArgumentParser's own usage line


def _dict_fields() -> set[str]:
    return {"optimizer_kwargs", "qat", *getattr(OptQuantTrainingArguments, "_VALID_DICT_FIELDS", [])}


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """(flags for HfArgumentParser, ``--dict.key value`` shorthands)."""
    plain, dotted = [], []
    i = 0
    while i < len(argv):
        tok = argv[i]
        takes_value = i + 1 < len(argv) and not argv[i + 1].startswith("--") and "=" not in tok
        group = argv[i:i + 2] if takes_value else [tok]
        (dotted if tok.startswith("--") and "." in tok.split("=", 1)[0] else plain).extend(group)
        i += len(group)
    return plain, dotted


def _given(argv: list[str]) -> dict[str, Any]:
    """The flags on the command line, typed by HfArgumentParser; fields not given are absent."""
    names = [f.name for t in TRAIN_TYPES for f in dataclasses.fields(t) if f.init]
    parser = _parser()
    namespace, unknown = parser.parse_known_args(argv)
    flags = {tok.split("=", 1)[0] for tok in argv if tok.startswith("--")}
    dests = {a.dest for a in parser._actions if flags & set(a.option_strings)}
    for tok in unknown:
        if tok.startswith("-"):
            key = tok.lstrip("-").split("=", 1)[0].replace("-", "_")
            raise unknown_key_error(key, names, what="argument", fallback_fix="see `hf-optquant train --help`")
        raise ConfigError("arguments", f"unexpected {tok!r}", "write overrides as --field value")
    given = {k: v for k, v in vars(namespace).items() if k in dests}
    for name in _dict_fields() & given.keys():
        if isinstance(given[name], str) and given[name].lstrip().startswith("{"):
            try:
                given[name] = json.loads(given[name])
            except json.JSONDecodeError:
                pass  # the field's own validation names it, with an example that parses
    return given


def _point_to_shipped(config_path: str) -> None:
    """Outside a source checkout ``trainer_configs/tiny.yaml`` is not in the working folder: name the copy
    installed with the package."""
    from pathlib import Path

    from ..resources import resource_names, resource_path

    path = Path(config_path)
    if not path.is_file() and path.name in resource_names("trainer_configs"):
        raise ConfigError("config", f"{config_path} does not exist here",
                          f"use the copy installed with hf_optquant: {resource_path('trainer_configs', path.name)}")


def parse_train_config(config_path: str, overrides: list[str] | None = None):
    """``(TrainJobArguments, OptQuantTrainingArguments)`` from a YAML file and command-line flags."""
    _point_to_shipped(config_path)
    cfg = load_yaml(config_path)
    plain, dotted = _split(list(overrides or []))
    over = _given(plain)
    over = {**over, **{k: ({**over[k], **v} if isinstance(v, dict) and isinstance(over.get(k), dict) else v)
                       for k, v in parse_overrides(dotted).items()}}
    # Hub-facing defaults that make no sense offline; users can still set them.
    cfg.setdefault("report_to", "none")
    if not ({**cfg, **over}).get("output_dir"):  # TrainingArguments would silently use ./trainer_output
        raise ConfigError("output_dir", f"is not set in {config_path} or on the command line",
                          "pass --output_dir runs/NAME")
    return build_dataclasses(TRAIN_TYPES, cfg, over, where=str(config_path))
