"""Post-training quantization: RTN and GPTQ to compressed-tensors checkpoints.

Math (``gptq.py``) is separate from the calibration loop (``calibrate.py``), the in-process
quantized model (``apply.py``) and the checkpoint writer (``export.py``).
"""
from .actquant import attach_activation_quant
from .apply import quantize_model, target_linears, untie_lm_head
from .calibrate import sequential_quantize
from .config import PTQConfig
from .export import save_compressed_checkpoint
from .gptq import dampen, gptq_quantize, hessian_update, inverse_hessian_cholesky, reconstruction_error
from .optimum_backend import optimum_available, run_optimum_gptq
from .run import run_ptq

__all__ = [
    "PTQConfig",
    "quantize_model",
    "target_linears",
    "untie_lm_head",
    "attach_activation_quant",
    "sequential_quantize",
    "save_compressed_checkpoint",
    "hessian_update",
    "dampen",
    "inverse_hessian_cholesky",
    "gptq_quantize",
    "reconstruction_error",
    "optimum_available",
    "run_optimum_gptq",
    "run_ptq",
]
