"""Command-line flags of a :class:`~hf_optquant.quant.QuantScheme`, generated from its user-facing fields."""
from __future__ import annotations

import argparse

from ..config import add_field_flags, flag_values
from .scheme import QuantScheme, cli_bits

__all__ = ["add_scheme_arguments", "scheme_kwargs"]


def _comma_list(value: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in value.split(",") if t.strip())


def add_scheme_arguments(p: argparse.ArgumentParser) -> None:
    """``--w-bits``, ``--a-bits``, ``--granularity``, ``--targets``. Values left out stay unset, so the composing
    config's default applies."""
    add_field_flags(p, QuantScheme, only="user", unset=True,
                    types={"w_bits": cli_bits, "a_bits": cli_bits, "targets": _comma_list})


def scheme_kwargs(args: argparse.Namespace) -> dict:
    """The scheme keys given on the command line (flat, as the composing configs take them)."""
    return flag_values(args, QuantScheme, only="user")
