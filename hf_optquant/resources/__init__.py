"""Files shipped inside the package: the Hub card templates and the trainer/study configs.

They are read through ``importlib.resources``, so a wheel, ``pip install .`` and an editable
checkout all find the same files. The top-level ``hub_cards/`` and ``trainer_configs/`` folders of
the repository are copies for browsing and for the documented ``hf-optquant train trainer_configs/...``
commands; ``tests/test_resources.py`` keeps them identical to these.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import ConfigError

__all__ = ["RESOURCE_KINDS", "resource_names", "resource_text", "resource_path"]

RESOURCE_KINDS = ("hub_cards", "trainer_configs")


def _entry(kind: str, name: str):
    if kind not in RESOURCE_KINDS:
        raise ConfigError("resource", f"unknown resource folder {kind!r}", f"use one of {', '.join(RESOURCE_KINDS)}")
    entry = resources.files(__name__).joinpath(kind, name)
    if not entry.is_file():
        have = ", ".join(resource_names(kind)) or "none"
        raise ConfigError(kind, f"{name!r} is not shipped with hf_optquant (shipped: {have})",
                          "reinstall hf_optquant (pip install --force-reinstall hf_optquant)")
    return entry


def resource_names(kind: str) -> list[str]:
    folder = resources.files(__name__).joinpath(kind)
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def resource_text(kind: str, name: str) -> str:
    """The text of a shipped file, e.g. ``resource_text("hub_cards", "model_card.md")``."""
    return _entry(kind, name).read_text(encoding="utf-8")


def resource_path(kind: str, name: str) -> Path:
    """A filesystem path of a shipped file (for commands that name the file, like ``study --print-commands``)."""
    entry = _entry(kind, name)
    if not isinstance(entry, Path):
        # Only a zip import gets here; nothing this package depends on (torch) can run from a zip.
        raise ConfigError(kind, f"{name} is inside a zip archive, not on disk",
                          "install hf_optquant as a regular wheel (pip install hf_optquant)")
    return entry
