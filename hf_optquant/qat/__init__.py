"""Quantization-aware training: QuEST (the paper's) and RTN fake quantization for any HF causal LM."""
from .config import (
    AUTO_TARGET,
    DEFAULT_TARGETS,
    LLAMA_TARGETS,
    QUANTIZERS,
    QATConfig,
    qat_record,
    read_qat_record,
)
from .convert import QUEST_FORMS, convert_qat, deployed_qweights, load_qat_run, quest_deployed_weight
from .deploy import QuestLinear, load_quest, quest_transform_config, quest_weight_codes
from .hadamard import block_hadamard, hadamard_matrix
from .layer import QATLinear
from .numerics import (
                       QUEST_GAUSSIAN_CLIP,
                       derive_gaussian_clip,
                       gaussian_grid_mse,
                       gaussian_optimal_clip,
                       quest_fake_quant,
                       quest_ste,
                       rtn_ste,
                       rtn_ste_per_token,
)
from .prepare import find_targets, prepare_qat, qat_modules, set_qat_enabled, strip_qat

__all__ = [
    "QATConfig",
    "qat_record",
    "read_qat_record",
    "DEFAULT_TARGETS",
    "AUTO_TARGET",
    "LLAMA_TARGETS",
    "QUANTIZERS",
    "prepare_qat",
    "convert_qat",
    "load_qat_run",
    "load_quest",
    "QuestLinear",
    "QUEST_FORMS",
    "quest_transform_config",
    "quest_weight_codes",
    "QATLinear",
    "find_targets",
    "qat_modules",
    "set_qat_enabled",
    "strip_qat",
    "deployed_qweights",
    "quest_deployed_weight",
    "block_hadamard",
    "hadamard_matrix",
    "QUEST_GAUSSIAN_CLIP",
    "gaussian_optimal_clip",
    "derive_gaussian_clip",
    "gaussian_grid_mse",
    "quest_fake_quant",
    "quest_ste",
    "rtn_ste",
    "rtn_ste_per_token",
]
