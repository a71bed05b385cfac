"""What is being published: detect a run, checkpoint or study dir and read its records.

Formats are the shared artefacts of docs/DEVELOPING.md: a run dir has ``run.json``, a
quantized checkpoint dir ``quantization_record.json``, a study dir ``results.parquet``;
``eval.json`` sits inside the evaluated model dir.
"""
from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from ..errors import ConfigError
from ..io import read_json

__all__ = ["Source", "detect_source", "model_files", "find_parent_run", "scrub_record", "read_record",
           "SECRET_KEYS"]

# Top-level files of a model dir that make up the published model. Anything else stays local:
# Trainer checkpoints, optimizer states and training_args.bin (a pickle) are not part of a model.
_MODEL_PATTERNS = ("config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
                   "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "vocab.txt",
                   "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
                   "tokenizer.model", "recipe.yaml")
_RECORD_FILES = ("run.json", "quantization_record.json", "eval.json")
SECRET_KEYS = frozenset({"hub_token", "token", "hf_token", "use_auth_token", "auth_token", "push_to_hub_token"})


@dataclass(frozen=True)
class Source:
    kind: str  # "run", "checkpoint" or "study"
    path: Path

    @property
    def repo_type(self) -> str:
        return "dataset" if self.kind == "study" else "model"


def detect_source(path: str | Path) -> Source:
    p = Path(path)
    if not p.is_dir():
        raise ConfigError("PATH", f"{p} is not a directory", "give a run dir, a checkpoint dir or a study dir")
    if (p / "results.parquet").is_file():
        return Source("study", p)
    if (p / "quantization_record.json").is_file():
        return Source("checkpoint", p)
    if (p / "run.json").is_file():
        return Source("run", p)
    raise ConfigError("PATH", f"{p} has none of run.json, quantization_record.json or results.parquet",
                      "give a dir written by `hf-optquant train`, `hf-optquant ptq` or `hf-optquant study`")


def model_files(model_dir: Path) -> dict[str, Path]:
    """``{path_in_repo: local path}`` of the model's own files and its records."""
    out = {}
    for f in sorted(model_dir.iterdir()):
        if f.is_file() and (f.name in _RECORD_FILES or any(fnmatch.fnmatch(f.name, pat) for pat in _MODEL_PATTERNS)):
            out[f.name] = f
    if "config.json" not in out or not any(n.endswith(".safetensors") for n in out):
        raise ConfigError("PATH", f"{model_dir} has no config.json + *.safetensors model",
                          "publish a dir written by save_pretrained (the trainer and `hf-optquant ptq` write one)")
    return out


def find_parent_run(model_dir: Path, record: dict | None) -> tuple[Path | None, dict | None]:
    """The run dir (and its run.json) that a quantized checkpoint was made from, if it is on disk.

    ``source_model`` is the full-precision model dir: a run dir, or its ``common_loss/`` dir.
    """
    src = (record or {}).get("source_model")
    if not src:
        return None, None
    src_path = Path(src)
    if not src_path.is_absolute() and not src_path.exists():
        src_path = model_dir.parent / src
    for cand in (src_path, src_path.parent):
        if (cand / "run.json").is_file():
            return src_path, read_json(cand / "run.json")
    return (src_path if src_path.is_dir() else None), None


def _local_name(v: str) -> str | None:
    """The last component of an absolute local path (POSIX, ~ or a Windows drive), else None."""
    if v.startswith(("/", "~")):
        return Path(v).name
    if re.match(r"^[A-Za-z]:[\\/]", v):
        return PureWindowsPath(v).name
    return None


def scrub_record(obj):
    """A copy of a JSON-like record fit to publish: values of token-like keys replaced, and absolute local
    paths cut to their last component (they may name the user's home directory; Hub ids stay whole)."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if k.lower() in SECRET_KEYS and isinstance(v, str) and v else scrub_record(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub_record(v) for v in obj]
    if isinstance(obj, str):
        name = _local_name(obj)
        return obj if name is None else name
    return obj


def read_record(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except json.JSONDecodeError as exc:
        raise ConfigError(path.name, f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})",
                          "regenerate it with the command that wrote it") from None
