"""``QuantScheme``: what is quantized and how, declared once for PTQ, QAT, the study and the CLI.

One scheme maps one-to-one onto compressed-tensors' ``QuantizationScheme`` (the ``config_groups`` entry of
a checkpoint's ``quantization_config``): integer weights on the shared RTN grid (``hf_optquant.quant.rtn``)
with row (``channel``), ``group:G`` or ``tensor`` scales; activations quantized dynamically per token,
symmetric, or not at all; the target layers. ``PTQConfig`` and ``QATConfig`` compose a scheme and add what
only their method needs (the PTQ method, GPTQ's damping; the QAT quantizer, QuEST's Hadamard block); their
YAML and CLI keep the scheme's keys flat (``w_bits``, ``a_bits``, ``granularity``, ``targets``).

Bit widths are read by one parser (:func:`parse_bits`, 2-8 or none) and layer names are matched by one
matcher (:func:`matches_target`). What a composing config or the exporter needs beyond that is checked
where it is needed, once: PTQ needs quantized weights and the exported checkpoint 4- or 8-bit activations
(:meth:`QuantScheme.check_exportable`); QAT needs at least one target.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, unknown_key_error
from .rtn import Granularity, parse_granularity

__all__ = ["QuantScheme", "parse_bits", "cli_bits", "matches_target", "prefixed", "flat_scheme_keys",
           "check_keys", "BITS", "EXPORT_A_BITS",
           "AUTO_TARGET", "MIDRISE_ZERO_POINT", "STORAGE_FORMATS", "USER_KEYS"]

BITS = tuple(range(2, 9))
# Exported checkpoints quantize activations at 4 or 8 bits only (the widths the PTQ stage has always
# written and vLLM's int kernels run); training (QAT) may use any width in BITS.
EXPORT_A_BITS = (4, 8)
AUTO_TARGET = "auto"
# QuEST's midrise levels (k + 1/2) * step: an asymmetric compressed-tensors grid with this float zero point.
MIDRISE_ZERO_POINT = -0.5
STORAGE_FORMATS = ("pack-quantized", "int-quantized")
_NONE_WORDS = ("none", "null", "", "no", "fp", "16")
_STRATEGY = {"row": "channel", "group": "group", "tensor": "tensor"}


def _bits_value(value: Any) -> int | None:
    """The syntax of a bit width: an integer, or none (also written null, no, fp or 16: unquantized)."""
    if value is None:
        return None
    if isinstance(value, str):
        s = value.strip().lower()
        if s in _NONE_WORDS:
            return None
        if s.isdigit():
            return int(s)
        raise ValueError(f"{value!r} is not a bit width")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a bit width")
    return value


def parse_bits(value: Any, field: str = "bits", allowed: tuple[int, ...] = BITS) -> int | None:
    """The one bit-width parser: ``None`` (or "none") means unquantized, otherwise one of ``allowed`` (2-8)."""
    try:
        bits = _bits_value(value)
    except ValueError:
        raise ConfigError(field, f"must be an integer, got {value!r}",
                          f"use an integer between {BITS[0]} and {BITS[-1]}, or none") from None
    if bits is not None and bits not in allowed:
        raise ConfigError(field, f"{bits} bits is not supported", f"use one of {', '.join(map(str, allowed))} (or none)")
    return bits


def cli_bits(value: str) -> int | None:
    """argparse ``type`` of the bit flags: the syntax only (the range is the config's, so its error names the field)."""
    try:
        return _bits_value(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (use {BITS[0]}-{BITS[-1]} or none)") from None


def matches_target(pattern: str, name: str) -> bool:
    """The one target matcher: ``re:REGEX`` must match the whole module name; otherwise the name equals the
    pattern or ends with ``.pattern`` (``q_proj``, ``mlp.down_proj``). ``auto`` is resolved by the model's
    anatomy (``hf_optquant.models.anatomy.block_linears``), not by name."""
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return name == pattern or name.endswith("." + pattern)


def prefixed(exc: ConfigError, prefix: str) -> ConfigError:
    """``exc`` with its field named as the composing config names it (``qat.w_bits``, ``ptq[0].a_bits``)."""
    return ConfigError(f"{prefix}{exc.field}", exc.problem, exc.fix) if prefix else exc


@dataclass(frozen=True, kw_only=True)
class QuantScheme:
    w_bits: int | None = field(default=4, metadata={
        "help": "Weight bits, 2-8, or none.", "user": True})
    a_bits: int | None = field(default=4, metadata={
        "help": "Activation bits, dynamic per token, 2-8 or none (exported checkpoints: 4, 8 or none).",
        "user": True})
    granularity: str = field(default="row", metadata={
        "help": "Weight scales: row (one per output row), group:G (per G input columns) or tensor.",
        "user": True})
    targets: tuple[str, ...] = field(default=(), metadata={
        "help": "Layers, by module-name pattern: a name suffix (q_proj), a dotted suffix (mlp.down_proj), "
                "'re:REGEX' (whole name) or auto (every linear in the decoder blocks plus the LM head); "
                "empty: every linear in the decoder blocks (PTQ). On the command line: comma-separated.", "user": True})
    symmetric: bool = field(default=True, metadata={
        "help": "Weights on the symmetric grid, zero point 0 (RTN, GPTQ, rtn QAT); false: QuEST's midrise "
                "levels (codes + 1/2) * scale, stored with a float zero point of -1/2."})
    format: str | None = field(default=None, metadata={
        "help": "compressed-tensors storage format; none: int-quantized (int8 codes) for W8A8 or a midrise "
                "grid, pack-quantized (codes packed in int32) otherwise."})

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalised values are set once, here
        set_(self, "w_bits", parse_bits(self.w_bits, "w_bits"))
        set_(self, "a_bits", parse_bits(self.a_bits, "a_bits"))
        if self.w_bits is None and self.a_bits is None:
            raise ConfigError("w_bits", "both w_bits and a_bits are none: nothing to quantize",
                              "set w_bits and/or a_bits to 2-8")
        set_(self, "granularity", str(parse_granularity(self.granularity)))
        targets = (self.targets,) if isinstance(self.targets, str) else self.targets
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) and t.strip() for t in targets):
            raise ConfigError("targets", f"must be a list of module-name patterns, got {self.targets!r}",
                              "e.g. [q_proj, k_proj], [auto] or [re:.*proj]")
        for t in targets:
            if t.startswith("re:"):
                try:
                    re.compile(t[3:])
                except re.error as exc:
                    raise ConfigError("targets", f"bad regular expression {t!r} ({exc})", "fix the pattern") from None
        set_(self, "targets", tuple(targets))
        if not isinstance(self.symmetric, bool):
            raise ConfigError("symmetric", f"must be true or false, got {self.symmetric!r}", "write true or false")
        if self.format is not None and self.format not in STORAGE_FORMATS:
            raise ConfigError("format", f"unknown storage format {self.format!r}", f"use {' or '.join(STORAGE_FORMATS)}")
        if self.format == "pack-quantized" and not self.symmetric:
            raise ConfigError("format", "a float zero point cannot be packed into int32 words",
                              "use int-quantized for a midrise (symmetric: false) grid")

    @property
    def gran(self) -> Granularity:
        return parse_granularity(self.granularity)

    @property
    def zero_point(self) -> float:
        return 0.0 if self.symmetric else MIDRISE_ZERO_POINT

    @property
    def storage_format(self) -> str:
        if self.format is not None:
            return self.format
        return "int-quantized" if (self.w_bits == 8 and self.a_bits == 8) or not self.symmetric else "pack-quantized"

    def replace(self, **changes) -> QuantScheme:
        return dataclasses.replace(self, **changes)

    def check_exportable(self) -> None:
        """What a compressed-tensors checkpoint of hf_optquant needs: quantized weights, activations 4, 8 or none."""
        if self.w_bits is None:
            raise ConfigError("w_bits", "is none: a quantized checkpoint needs quantized weights",
                              f"use an integer between {BITS[0]} and {BITS[-1]}")
        parse_bits(self.a_bits, "a_bits", allowed=EXPORT_A_BITS)

    def user_dict(self) -> dict[str, Any]:
        """The keys users write (YAML, CLI) and records store, in the records' order."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self) if f.metadata.get("user")}

    def to_compressed_tensors(self):
        """The compressed-tensors ``QuantizationScheme``. Its targets are ``self.targets`` as they are:
        compressed-tensors matches full module names, class names or ``re:`` prefixes, so the exporter first
        resolves the patterns to the quantized modules' names (``scheme.replace(targets=names)``)."""
        import torch
        from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

        gran = self.gran
        weights = None
        if self.w_bits is not None:
            zp = {"symmetric": True} if self.symmetric else {"symmetric": False, "zp_dtype": torch.float32}
            weights = QuantizationArgs(num_bits=self.w_bits, type="int", strategy=_STRATEGY[gran.kind],
                                       group_size=gran.group_size if gran.kind == "group" else None, **zp)
        acts = None
        if self.a_bits is not None:
            acts = QuantizationArgs(num_bits=self.a_bits, type="int", symmetric=True, strategy="token", dynamic=True)
        return QuantizationScheme(targets=list(self.targets), weights=weights, input_activations=acts,
                                  format=self.storage_format)

    @classmethod
    def from_compressed_tensors(cls, scheme) -> QuantScheme:
        """The inverse of :meth:`to_compressed_tensors`; a scheme hf_optquant cannot compute (float weights,
        static or non-token activations, output activations) is refused with the reason."""
        w, a = scheme.weights, scheme.input_activations
        if scheme.output_activations is not None:
            raise ConfigError("quantization_config", "quantizes output activations", "hf_optquant quantizes inputs only")
        gran = "row"
        if w is not None:
            if w.type != "int" or w.strategy not in _STRATEGY.values() or w.actorder is not None:
                raise ConfigError("quantization_config", f"weights {w.type} / {w.strategy} are not an RTN grid",
                                  "hf_optquant reads int weights with channel, group or tensor scales")
            strategy = {v: k for k, v in _STRATEGY.items()}[w.strategy]
            gran = f"group:{w.group_size}" if strategy == "group" else strategy
        if a is not None and (a.type != "int" or a.strategy != "token" or not a.dynamic or not a.symmetric):
            raise ConfigError("quantization_config", "activations are not dynamic symmetric per-token int",
                              "hf_optquant reads dynamic per-token activation schemes only")
        symmetric = w is None or bool(w.symmetric)
        out = cls(w_bits=w.num_bits if w is not None else None, a_bits=a.num_bits if a is not None else None,
                  granularity=gran, targets=tuple(scheme.targets), symmetric=symmetric)
        # The format is kept only where it differs from the one the bits imply, so the round trip is exact.
        return out if scheme.format in (None, out.storage_format) else out.replace(format=scheme.format)

    @classmethod
    def user_keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("user"))


USER_KEYS = QuantScheme.user_keys()


def flat_scheme_keys(prefix: str = ""):
    """Class decorator for a config that composes a ``scheme: QuantScheme`` field: its constructor also takes
    the scheme's user keys flat (``PTQConfig(method="gptq", w_bits=4, granularity="group:64")``), as its YAML
    and command line write them; keys not given keep the class's default scheme. Errors name the field as the
    config's users write it (``prefix`` + key, e.g. ``qat.w_bits``). Written by hand because a dataclass
    cannot declare keyword arguments that are not fields without declaring the scheme's fields again."""
    def wrap(cls):
        init = cls.__init__
        default = {f.name: f for f in dataclasses.fields(cls)}["scheme"].default_factory

        @functools.wraps(init)
        def __init__(self, **kwargs):
            flat = {k: kwargs.pop(k) for k in USER_KEYS if k in kwargs}
            scheme = kwargs.get("scheme")
            try:
                if isinstance(scheme, dict):
                    scheme, flat = None, {**scheme, **flat}
                if flat or scheme is None:
                    kwargs["scheme"] = (scheme or default()).replace(**flat) if flat else default()
            except ConfigError as exc:
                raise prefixed(exc, prefix) from None
            except TypeError as exc:  # an unknown key inside a scheme mapping
                raise ConfigError(f"{prefix}scheme", str(exc), f"use {', '.join(USER_KEYS)}") from None
            if not isinstance(kwargs["scheme"], QuantScheme):
                raise ConfigError(f"{prefix}scheme", f"must be a QuantScheme, got {type(kwargs['scheme']).__name__}",
                                  "pass hf_optquant.quant.QuantScheme(...) or the keys flat")
            init(self, **kwargs)

        cls.__init__ = __init__
        return cls

    return wrap


def check_keys(cls, data: dict, prefix: str = "") -> None:
    """Refuse a key that is neither a field of the composing config ``cls`` nor a scheme user key."""
    names = [f.name for f in dataclasses.fields(cls) if f.name != "scheme"] + list(USER_KEYS)
    for key in data:
        if key not in names:
            raise unknown_key_error(key, names, field=f"{prefix}{key}")
