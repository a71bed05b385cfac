"""Tensor-only optimizer state for ``torch.load(weights_only=True)``.

Some pytorch_optimizer classes (ScalableShampoo's preconditioner and graft objects) keep
Python objects in their state, which HF Trainer's safe checkpoint loading refuses. These
functions turn such objects into plain dicts of tensors and back; only classes from the
optimizer libraries are ever rebuilt.
"""
from __future__ import annotations

import enum
import importlib
from typing import Any

import torch

__all__ = ["encode_state", "decode_state", "CALLABLE"]

_ALLOWED = ("pytorch_optimizer.", "torch.")
_OBJ, _ENUM, _TUPLE = "__hfoq_object__", "__hfoq_enum__", "__hfoq_tuple__"
CALLABLE = "__hfoq_callable__"  # a schedule function in a param group: kept from the live optimizer


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve(path: str) -> type:
    module, _, qual = path.partition(":")
    if not module.startswith(_ALLOWED):
        raise ValueError(f"refusing to rebuild {path} from optimizer state")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def encode_state(obj: Any) -> Any:
    if obj is None or isinstance(obj, (torch.Tensor, bool, int, float, str)) and not isinstance(obj, enum.Enum):
        return obj
    if isinstance(obj, enum.Enum):
        return {_ENUM: _path(type(obj)), "value": obj.value}
    if isinstance(obj, dict):
        return {k: encode_state(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return {_TUPLE: [encode_state(v) for v in obj]}
    if isinstance(obj, list):
        return [encode_state(v) for v in obj]
    if callable(obj) and not isinstance(obj, type):
        return {CALLABLE: True}
    if hasattr(obj, "__dict__"):
        return {_OBJ: _path(type(obj)), "attrs": encode_state(vars(obj))}
    return obj


def decode_state(obj: Any) -> Any:
    if isinstance(obj, list):
        return [decode_state(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if _ENUM in obj:
        return _resolve(obj[_ENUM])(obj["value"])
    if _TUPLE in obj:
        return tuple(decode_state(v) for v in obj[_TUPLE])
    if _OBJ in obj:
        cls = _resolve(obj[_OBJ])
        inst = cls.__new__(cls)
        inst.__dict__.update(decode_state(obj["attrs"]))
        return inst
    return {k: decode_state(v) for k, v in obj.items()}
