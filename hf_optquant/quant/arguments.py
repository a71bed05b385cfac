"""Command-line flags of a :class:`~hf_optquant.quant.QuantScheme`, generated from its fields (one place)."""
from __future__ import annotations

import argparse
import dataclasses

from .scheme import QuantScheme, cli_bits

__all__ = ["add_scheme_arguments", "scheme_kwargs"]


def _flags():
    return [f for f in dataclasses.fields(QuantScheme) if f.metadata.get("flag")]


def _comma_list(value: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in value.split(",") if t.strip())


def add_scheme_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per user-facing scheme field (``--w-bits``, ``--a-bits``, ``--granularity``, ``--targets``),
    with the field's help and default. Values left out stay unset, so the composing config's default applies."""
    for f in _flags():
        kind = cli_bits if f.name.endswith("_bits") else _comma_list if f.name == "targets" else str
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ",".join(default) if isinstance(default, tuple) else default
        extra = " (comma-separated)" if f.name == "targets" else ""
        p.add_argument(f.metadata["flag"], type=kind, default=argparse.SUPPRESS, dest=f.name,
                       help=f"{f.metadata['help']}{extra} Default: {shown if shown != '' else 'empty'}.")


def scheme_kwargs(args: argparse.Namespace) -> dict:
    """The scheme keys given on the command line (flat, as the composing configs take them)."""
    return {f.name: getattr(args, f.name) for f in _flags() if hasattr(args, f.name)}
