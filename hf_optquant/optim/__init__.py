"""The six optimizers of the study, with the paper's routing and presets."""
from .builders import OPTIMIZERS, build_optimizer, optimizer_hparams
from .combined import CombinedOptimizer
from .factory import OptQuantOptimizerFactory, optimizer_cls_and_kwargs
from .presets import PRESETS, AdamWPreset, MuonPreset, PSGDPreset, ScionPreset, ShampooPreset, SOAPPreset
from .routing import route_parameters, transposed_weights
from .shampoo import Shampoo

__all__ = [
    "OPTIMIZERS",
    "PRESETS",
    "build_optimizer",
    "optimizer_cls_and_kwargs",
    "OptQuantOptimizerFactory",
    "optimizer_hparams",
    "route_parameters",
    "transposed_weights",
    "Shampoo",
    "CombinedOptimizer",
    "AdamWPreset",
    "MuonPreset",
    "PSGDPreset",
    "ScionPreset",
    "ShampooPreset",
    "SOAPPreset",
]
