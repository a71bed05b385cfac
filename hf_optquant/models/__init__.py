"""Model size presets (the paper's OLMo2-style family, plus tiny CPU sizes)."""
from .presets import SIZE_PRESETS, ModelPreset, build_model, count_parameters, model_config

__all__ = ["SIZE_PRESETS", "ModelPreset", "build_model", "count_parameters", "model_config"]
