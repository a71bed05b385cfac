"""Shared quantization primitives used by QAT, PTQ and diagnostics: the scheme (``QuantScheme``: bits,
granularity, targets; one bit-width parser, one target matcher) and the RTN grid."""
from .rtn import (
    Granularity,
    dequantize_rtn,
    fake_quant_per_token,
    fake_quant_rtn,
    parse_granularity,
    qrange,
    quantize_rtn,
    rtn_scale,
)
from .scheme import AUTO_TARGET, QuantScheme, matches_target, parse_bits

__all__ = [
    "QuantScheme",
    "parse_bits",
    "matches_target",
    "AUTO_TARGET",
    "Granularity",
    "parse_granularity",
    "qrange",
    "rtn_scale",
    "quantize_rtn",
    "dequantize_rtn",
    "fake_quant_rtn",
    "fake_quant_per_token",
]
