"""What keeps two commands from spoiling one study dir: locks and the recorded config.

- One study (one-shot or ``--collect``) at a time per output dir: ``.study.lock``.
- One process per run dir (a one-shot study and a ``--run`` job, or two jobs): ``runs/.RUN_ID.lock``;
  ``--run`` jobs of different runs share the study dir, as ``--print-commands`` intends.
- ``study_config.json`` records the config the results were made with; a rerun with other
  settings is refused with the fields that differ (its runs and results would silently be reused).
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..lock import exclusive_lock
from ..ptq.config import PTQConfig
from ..qat.config import QATConfig
from .config import RunSpec, StudyConfig

__all__ = ["study_lock", "run_lock", "config_record", "changed_fields", "check_same_config"]

CONFIG_FILE = "study_config.json"


def study_lock(cfg: StudyConfig):
    return exclusive_lock(Path(cfg.output_dir) / ".study.lock", what="study")


def run_lock(cfg: StudyConfig, spec: RunSpec):
    return exclusive_lock(Path(cfg.output_dir) / "runs" / f".{spec.run_id}.lock",
                          what=f"process training run {spec.run_id}")


def _as_record(o: Any) -> Any:
    # The stages' configs are recorded by their flat keys (as written in YAML), not their composed scheme.
    return o.to_dict() if isinstance(o, (PTQConfig, QATConfig)) else dataclasses.asdict(o)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_as_record))


def config_record(cfg: StudyConfig) -> dict:
    return {f.name: _jsonable(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def _defaults() -> dict:
    out = {}
    for f in dataclasses.fields(StudyConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = _jsonable(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = _jsonable(f.default_factory())
    return out


def _flatten(value: Any, prefix: str, out: dict) -> dict:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}[{i}]", out)
    else:
        out[prefix] = value
    return out


_MISSING = "<unset>"


def changed_fields(saved: dict, record: dict) -> dict[str, tuple[Any, Any]]:
    """``{dotted field: (saved, now)}``; a field the saved record lacks (added since) counts at its default."""
    saved = {**{k: v for k, v in _defaults().items() if k not in saved}, **saved}
    a, b = _flatten(saved, "", {}), _flatten(record, "", {})
    # A key of a list entry added since (e.g. ptq[1].lm_head) counts at the default entry's value.
    entry = _flatten(_defaults(), "", {})
    a.update({k: entry[re.sub(r"\[\d+\]", "[0]", k)] for k in set(b) - set(a)
              if re.sub(r"\[\d+\]", "[0]", k) in entry and "[" in k})
    return {k: (a.get(k, _MISSING), b.get(k, _MISSING)) for k in sorted(set(a) | set(b))
            if a.get(k, _MISSING) != b.get(k, _MISSING)}


def check_same_config(cfg: StudyConfig, saved: dict) -> None:
    diff = changed_fields(saved, config_record(cfg))
    if not diff:
        return
    shown = "; ".join(f"{k}: {str(old)[:40]} -> {str(new)[:40]}" for k, (old, new) in list(diff.items())[:4])
    more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
    raise ConfigError(", ".join(list(diff)[:8]),
                      f"differ from the config {cfg.output_dir} was run with ({shown}{more}); its runs and "
                      "results would be reused as they are",
                      f"rerun with the recorded settings ({Path(cfg.output_dir) / CONFIG_FILE}) "
                      "or use a new output_dir")
