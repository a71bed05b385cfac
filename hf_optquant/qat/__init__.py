"""Quantization-aware training: QuEST (the paper's) and RTN fake quantization for any HF causal LM."""
from .config import DEFAULT_TARGETS, QUANTIZERS, QATConfig, pattern_matches
from .convert import convert_qat, deployed_qweights, load_qat_run, quest_deployed_weight
from .hadamard import block_hadamard, hadamard_matrix
from .layer import QATLinear
from .numerics import gaussian_grid_mse, gaussian_optimal_clip, quest_fake_quant, quest_ste, rtn_ste, rtn_ste_per_token
from .prepare import find_targets, prepare_qat, qat_modules, set_qat_enabled, strip_qat

__all__ = [
    "QATConfig",
    "DEFAULT_TARGETS",
    "QUANTIZERS",
    "pattern_matches",
    "prepare_qat",
    "convert_qat",
    "load_qat_run",
    "QATLinear",
    "find_targets",
    "qat_modules",
    "set_qat_enabled",
    "strip_qat",
    "deployed_qweights",
    "quest_deployed_weight",
    "block_hadamard",
    "hadamard_matrix",
    "gaussian_optimal_clip",
    "gaussian_grid_mse",
    "quest_fake_quant",
    "quest_ste",
    "rtn_ste",
    "rtn_ste_per_token",
]
