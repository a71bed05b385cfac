"""hf_optquant: which optimizer should I train with if the model will be quantized?

Hugging Face Trainer extension implementing "Beyond Outliers: A Study of Optimizers
Under Quantization" (arXiv 2509.23500). Heavy submodules load on first use.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "OptQuantTrainer": "hf_optquant.trainer",
    "OptQuantTrainingArguments": "hf_optquant.trainer",
    "OptQuantTrainerMixin": "hf_optquant.trainer",
    "optimizer_cls_and_kwargs": "hf_optquant.optim",
    "build_optimizer": "hf_optquant.optim",
    "OPTIMIZERS": "hf_optquant.optim",
    "build_model": "hf_optquant.models",
    "QATConfig": "hf_optquant.qat",
    "prepare_qat": "hf_optquant.qat",
    "convert_qat": "hf_optquant.qat",
    "PTQConfig": "hf_optquant.ptq",
    "QuantScheme": "hf_optquant.quant",
    "ConfigError": "hf_optquant.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hf_optquant' has no attribute {name!r}")
