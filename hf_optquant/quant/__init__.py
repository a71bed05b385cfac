"""Shared quantization primitives (RTN grid, granularity parsing) used by QAT, PTQ and diagnostics."""
from .rtn import (
    Granularity,
    dequantize_rtn,
    fake_quant_per_token,
    fake_quant_rtn,
    parse_granularity,
    qrange,
    quantize_rtn,
    rtn_scale,
    validate_bits,
)

__all__ = [
    "Granularity",
    "parse_granularity",
    "qrange",
    "rtn_scale",
    "quantize_rtn",
    "dequantize_rtn",
    "fake_quant_rtn",
    "fake_quant_per_token",
    "validate_bits",
]
