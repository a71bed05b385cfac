"""YAML configs over dataclasses, with ``--field value`` overrides from the command line.

Keys are validated against the dataclasses' fields before any dataclass is built, so an
unknown key is one clear line with the closest valid name.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, unknown_key_error

__all__ = ["load_yaml", "parse_overrides", "build_dataclasses", "add_field_flags", "flag_values"]


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError("config", f"{path} is a directory", "give the path of a YAML file inside it")
    if not path.is_file():
        raise ConfigError("config", f"{path} does not exist", "give the path of a YAML file, e.g. trainer_configs/tiny.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError("config", f"{path} is not a text file", "give a YAML file (UTF-8 text)") from None
    except yaml.YAMLError as exc:
        raise ConfigError("config", f"{path} is not valid YAML ({str(exc).splitlines()[0]})", "fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping of field: value", "write one 'field: value' per line")
    return data


def parse_overrides(argv: list[str]) -> dict[str, Any]:
    """``--a 1 --b.c x --flag`` -> ``{"a": 1, "b": {"c": "x"}, "flag": True}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--"):
            raise ConfigError("arguments", f"unexpected {tok!r}", "write overrides as --field value")
        key, eq, val = tok[2:].partition("=")
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                val = argv[i + 1]
                i += 1
            else:
                val = "true"
        try:
            value = yaml.safe_load(val) if val != "" else ""
        except yaml.YAMLError:  # e.g. '{bad json': the field's own check names it
            value = val
        key = key.replace("-", "_")
        target = out
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = value
        i += 1
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """YAML reads ``1e-3`` as a string (YAML 1.1); turn strings into the field's number type. A whole number
    written as a float (``max_steps: 1e3``) is accepted for an integer field; ``10.5`` is not."""
    args = typing.get_args(hint) or (hint,)
    if value is False and str in args and bool not in args:
        return "no"  # YAML 1.1 reads `eval_strategy: no` as false; the user meant the string
    if isinstance(value, float) and int in args and float not in args:
        if value.is_integer():
            return int(value)
        raise ConfigError(key, f"must be a whole number, got {value!r}", f"write e.g. {key}: {int(value)}")
    if not isinstance(value, str):
        return value
    for typ in (int, float):
        if typ in args:
            try:
                return typ(value)
            except ValueError:
                if typ is int and float not in args and _is_float(value):
                    return _coerce(float(value), hint, key)
                if typ is float or float not in args:
                    raise ConfigError(key, f"expected a number, got {value!r}", "write a number, e.g. 3e-3") from None
    return value


def build_dataclasses(types: tuple[type, ...], config: dict[str, Any], overrides: dict[str, Any] | None = None,
                      *, where: str = "config") -> tuple:
    """Split one flat mapping over several dataclasses; unknown keys are rejected."""
    data = _merge(config, overrides or {})
    names = {f.name: t for t in types for f in dataclasses.fields(t) if f.init}
    for key in data:
        if key not in names:
            raise unknown_key_error(key, names, where=where,
                                    fallback_fix="see `hf-optquant train --help` for the fields")
    built = []
    for t in types:
        hints = typing.get_type_hints(t)
        kwargs = {k: _coerce(v, hints.get(k), k) for k, v in data.items() if names[k] is t}
        try:
            built.append(t(**kwargs))
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            msg = str(exc).splitlines()[0]
            # Name the field when the library's message does (e.g. "requires non-zero --logging_steps").
            field_name = next((k for k in sorted(kwargs, key=len, reverse=True) if k in msg), t.__name__)
            raise ConfigError(field_name, msg, "check the value's type and range") from None
    return tuple(built)


def _flag_fields(cls, only: str | None) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("help") and (only is None or f.metadata.get(only))]


def add_field_flags(p: argparse.ArgumentParser, cls, *, only: str | None = None, types: dict | None = None,
                    unset: bool = False) -> None:
    """One ``--field-name`` flag per field of the dataclass ``cls`` that has ``help`` metadata (and the metadata
    key ``only``, if given), with the field's help and default. ``types`` overrides the type read from the
    default (int or str); with ``unset`` a flag left out is absent from the namespace, so the config's own
    default applies. The train command's fields go through ``HfArgumentParser`` instead (trainer/parsing.py):
    its flags keep TrainingArguments' underscore spelling, which run_clm-style scripts share."""
    for f in _flag_fields(cls, only):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ",".join(default) if isinstance(default, tuple) else default
        kind = (types or {}).get(f.name) or (int if isinstance(default, int) and not isinstance(default, bool) else str)
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind,
                       default=argparse.SUPPRESS if unset else default,
                       help=f"{f.metadata['help']} Default: {shown if shown != '' else 'empty'}.")


def flag_values(args: argparse.Namespace, cls, *, only: str | None = None) -> dict[str, Any]:
    """The values of ``cls``'s flags in ``args`` (those given, when they were added with ``unset``)."""
    return {f.name: getattr(args, f.name) for f in _flag_fields(cls, only) if hasattr(args, f.name)}
