"""How long a sequence a model takes, read without loading weights (preset table or config.json)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError

__all__ = ["max_positions", "check_sequence_length"]


def max_positions(model: str) -> int | None:
    """Maximum sequence length of a size preset or a local model dir (None when unknown, e.g. a Hub id)."""
    from .presets import SIZE_PRESETS

    if model in SIZE_PRESETS:
        return SIZE_PRESETS[model].max_position_embeddings
    cfg = Path(str(model)) / "config.json"
    if not cfg.is_file():
        return None
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None  # the model loader reports a damaged config with its own message
    value = data.get("max_position_embeddings", data.get("n_positions")) if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def check_sequence_length(model: str, length, field: str) -> None:
    """``length`` tokens per sequence: an integer >= 2 (one token predicts nothing) within the model's positions."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ConfigError(field, f"must be an integer >= 2 (a sequence of {length!r} tokens predicts nothing)",
                          f"use e.g. {field} 128")
    positions = max_positions(model)
    if positions is not None and length > positions:
        raise ConfigError(field, f"{length} is longer than the {positions} positions of model {model!r}",
                          f"use {field} <= {positions}")
