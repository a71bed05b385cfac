"""Post-training quantization: RTN and GPTQ to compressed-tensors checkpoints."""
from .apply import attach_activation_quant, quantize_model, target_linears
from .config import PTQConfig
from .export import quantization_scheme, save_compressed_checkpoint
from .gptq import gptq_quantize, hessian_update
from .run import calibration_ids, load_causal_lm, run_ptq

__all__ = [
    "PTQConfig",
    "quantize_model",
    "attach_activation_quant",
    "target_linears",
    "save_compressed_checkpoint",
    "quantization_scheme",
    "gptq_quantize",
    "hessian_update",
    "run_ptq",
    "load_causal_lm",
    "calibration_ids",
]
