"""Models: size presets (the paper's OLMo2-style family, plus tiny CPU sizes), loading a saved causal LM, and
its anatomy (decoder blocks, final norm, linear layers) and block-input capture, shared by PTQ, QAT, eval,
diagnostics and the study."""
from .anatomy import FINAL_NORM_PATHS, block_linears, decoder_blocks
from .capture import capture_block_inputs, hidden_of, with_hidden
from .loading import load_causal_lm
from .presets import SIZE_PRESETS, ModelPreset, build_model, count_parameters, meta_model, model_config

__all__ = ["SIZE_PRESETS", "ModelPreset", "build_model", "meta_model", "count_parameters", "model_config",
           "load_causal_lm", "decoder_blocks", "block_linears", "FINAL_NORM_PATHS", "capture_block_inputs",
           "hidden_of", "with_hidden"]
