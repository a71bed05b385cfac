"""Optimizer state as plain data, read back without calling anything the file names.

HF Trainer saves ``optimizer.pt`` with ``torch.save`` and loads it with
``torch.load(weights_only=True)``, which admits only tensors, numbers, strings and
containers. The schema on top of that (ours):

- tensors, numbers, strings, bools, ``None``, ``torch.dtype``, lists and dicts are stored as they are;
  a tuple is ``{"__hfoq_tuple__": [...]}``.
- Param-group values that are configuration objects (SCION's ``LMONorm``, Kron's
  ``precondition_dtype`` and its probability schedule function) are *not* stored:
  the file holds ``{"__hfoq_live__": "<description>"}`` and loading takes the value
  from the live optimizer, which was built from the run's own config; a description
  that does not match the live value is refused. So no param group ever holds an
  object that came from the file.
- Per-parameter state is tensors and plain data only. ``{"__hfoq_object__": ...}`` /
  ``{"__hfoq_enum__": ...}`` entries (an earlier version wrote them for ScalableShampoo) are
  rebuilt only for an exact class of :func:`_state_classes` / :func:`_state_enums`, looked up
  in a dict, never imported by name; both tables are empty, so every such entry is refused.

Anything else that carries an ``__hfoq_`` tag, or a name outside the tables, is refused
with one line (``ConfigError``) before the optimizer is touched.
"""
from __future__ import annotations

import enum
from typing import Any

import torch

from ..errors import ConfigError

__all__ = ["encode_state", "decode_state"]

_OBJ, _ENUM, _TUPLE, _LIVE = "__hfoq_object__", "__hfoq_enum__", "__hfoq_tuple__", "__hfoq_live__"
_CALLABLE = "__hfoq_callable__"  # written by earlier versions for a schedule function: same as _LIVE
_TAG = "__hfoq_"
_FIELD = "optimizer.pt"
_FIX = "resume only from checkpoints you created; delete this checkpoint-* directory to resume from an earlier one"


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _state_classes() -> dict[str, type]:
    """Exact classes allowed in per-parameter state, keyed by ``module:qualname``: none.

    The six optimizers keep tensors and plain data only (our Shampoo replaced pytorch_optimizer's
    ScalableShampoo, whose PreConditioner / Graft objects were the one exception). Kept as an
    explicit, empty table so that adding a class is a visible, reviewed decision.
    """
    return {}


def _state_enums() -> dict[str, type[enum.Enum]]:
    return {}


def _describe(value: Any) -> str:
    """A stable description of a configuration object (no memory addresses)."""
    if isinstance(value, enum.Enum):
        return f"{_path(type(value))}.{value.name}"
    if isinstance(value, torch.dtype):
        return str(value)
    return f"{getattr(value, '__module__', '?')}:{getattr(value, '__qualname__', type(value).__qualname__)}"


def _is_config_object(value: Any) -> bool:
    return isinstance(value, (enum.Enum, torch.dtype)) or (callable(value) and not isinstance(value, torch.Tensor))


def _plain(value: Any, where: str) -> Any:
    """Encode a per-parameter state value."""
    if isinstance(value, enum.Enum):
        if _state_enums().get(_path(type(value))) is not type(value):
            raise TypeError(f"optimizer state {where}: cannot checkpoint enum {_path(type(value))}")
        return {_ENUM: _path(type(value)), "value": value.value}
    if value is None or isinstance(value, (torch.Tensor, torch.dtype, bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, tuple):  # torch.Size included: read back as a tuple
        return {_TUPLE: [_plain(v, where) for v in value]}
    if isinstance(value, list):
        return [_plain(v, where) for v in value]
    if _state_classes().get(_path(type(value))) is type(value):
        return {_OBJ: _path(type(value)), "attrs": _plain(vars(value), where)}
    raise TypeError(f"optimizer state {where}: cannot checkpoint a {_path(type(value))}")


def encode_state(state_dict: dict) -> dict:
    """An optimizer's ``state_dict()`` as plain data (see the module docstring).

    A dict without ``param_groups`` is an envelope around one (e.g. a rank's shard under FSDP2,
    ``optim/distributed.py``): its dict values are encoded the same way.
    """
    if not isinstance(state_dict.get("param_groups"), list):
        return {k: encode_state(v) if isinstance(v, dict) else _plain(v, str(k)) for k, v in state_dict.items()}
    groups = []
    for i, g in enumerate(state_dict.get("param_groups", [])):
        groups.append({k: {_LIVE: _describe(v)} if _is_config_object(v) else _plain(v, f"param_groups[{i}].{k}")
                       for k, v in g.items()})
    out = {k: _plain(v, k) for k, v in state_dict.items() if k != "param_groups"}
    out["param_groups"] = groups
    return out


def _refuse(where: str, problem: str) -> ConfigError:
    return ConfigError(_FIELD, f"{where}: {problem}", _FIX)


def _decode(value: Any, where: str) -> Any:
    """Decode a per-parameter state value; only tuples and the exact classes in the tables are rebuilt."""
    if isinstance(value, list):
        return [_decode(v, where) for v in value]
    if not isinstance(value, dict):
        if value is None or isinstance(value, (torch.Tensor, torch.dtype, bool, int, float, str)):
            return value
        raise _refuse(where, f"holds a {type(value).__name__}, not optimizer state")
    tags = [k for k in value if isinstance(k, str) and k.startswith(_TAG)]
    if not tags:
        return {k: _decode(v, f"{where}.{k}") for k, v in value.items()}
    if tags == [_TUPLE] and isinstance(value[_TUPLE], list):
        return tuple(_decode(v, where) for v in value[_TUPLE])
    if tags == [_ENUM]:
        name = value[_ENUM]
        cls = _state_enums().get(name) if isinstance(name, str) else None
        member = next((m for m in cls if type(m.value) is type(value.get("value"))
                       and m.value == value.get("value")), None) if cls is not None else None
        if member is None:
            raise _refuse(where, f"names {str(name)[:120]!r}, which is not an optimizer state enum here")
        return member
    if tags == [_OBJ]:
        name = value[_OBJ]
        cls = _state_classes().get(name) if isinstance(name, str) else None
        attrs = value.get("attrs")
        if cls is None:
            raise _refuse(where, f"names {str(name)[:120]!r}, which is not an optimizer state class here")
        if not isinstance(attrs, dict) or not all(isinstance(k, str) and not k.startswith("__") for k in attrs):
            raise _refuse(where, f"the attributes of {name} are not a dict of plain names")
        inst = object.__new__(cls)  # the allowlisted class itself; no __init__ / __setstate__ runs
        inst.__dict__.update(_decode(attrs, where))
        return inst
    raise _refuse(where, f"holds the unknown entry {tags[0][:60]!r}")


def _decode_group(saved: Any, live: dict, where: str) -> dict:
    if not isinstance(saved, dict):
        raise _refuse(where, "is not a dict")
    params = saved.get("params")  # (under FSDP2 a rank's shard lists only the parameters it owns)
    if not (isinstance(params, list) and all(type(i) is int for i in params)):
        raise _refuse(f"{where}.params", "is not a list of parameter indices")
    out = {}
    for k, v in saved.items():
        here = f"{where}.{k}"
        tagged = isinstance(v, dict) and any(isinstance(t, str) and t.startswith(_TAG) for t in v)
        if not tagged or (isinstance(v, dict) and list(v) == [_TUPLE]):
            out[k] = _decode(v, here)
            continue
        if k not in live or not _is_config_object(live[k]):
            raise _refuse(here, "is a configuration object the live optimizer does not have")
        want = _describe(live[k])
        if _LIVE in v:
            got = v[_LIVE]
        elif _ENUM in v:  # earlier versions stored an enum by path and value: compare, never resolve
            same = isinstance(live[k], enum.Enum) and type(v.get("value")) is type(live[k].value) \
                and v.get("value") == live[k].value
            got = want if same and v[_ENUM] == _path(type(live[k])) else f"{v[_ENUM]}={v.get('value')!r}"
        elif _CALLABLE in v:
            got = want
        else:
            raise _refuse(here, f"holds the unknown entry {next(iter(v))[:60]!r}")
        if got != want:
            raise _refuse(here, f"was {str(got)[:120]!r} when saved, the optimizer now has {want!r}; "
                                "resume with the run's own optimizer settings")
        out[k] = live[k]
    return out


def decode_state(encoded: Any, live_param_groups: list[dict]) -> dict:
    """The inverse of :func:`encode_state` against the live optimizer's ``param_groups``.

    Raises ``ConfigError`` (one line) for anything outside the schema; nothing the file names is called.
    """
    if not isinstance(encoded, dict):
        raise _refuse("state", "is not an optimizer state_dict")
    if "param_groups" not in encoded:  # an envelope (see encode_state)
        if any(k in (_OBJ, _ENUM, _TUPLE, _LIVE, _CALLABLE) for k in encoded):
            raise _refuse("state", "is not an optimizer state_dict")
        return {k: decode_state(v, live_param_groups) if isinstance(v, dict) else _decode(v, str(k))
                for k, v in encoded.items()}
    if not isinstance(encoded["param_groups"], list):
        raise _refuse("param_groups", "is not a list")
    groups = encoded["param_groups"]
    if len(groups) != len(live_param_groups):
        raise _refuse("param_groups", f"has {len(groups)} groups, the optimizer has {len(live_param_groups)}")
    out = {k: _decode(v, k) for k, v in encoded.items() if k != "param_groups"}
    out["param_groups"] = [_decode_group(g, live, f"param_groups[{i}]")
                           for i, (g, live) in enumerate(zip(groups, live_param_groups))]
    return out
