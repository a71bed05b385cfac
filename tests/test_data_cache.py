"""The packed-corpus cache: one key per distinct corpus, written once, read back whole."""
from __future__ import annotations

import torch

from hf_optquant.data.packing import cached_blocks, packed_key


def test_packed_key_separates_what_changes_the_blocks(tmp_path):
    a, b = tmp_path / "a" / "corpus.txt", tmp_path / "b" / "corpus.txt"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text("x\n")
    base = packed_key(str(a), "train", 64)
    assert base == packed_key(str(a), "train", 64)
    others = [packed_key(str(b), "train", 64), packed_key(str(a), "validation", 64), packed_key(str(a), "train", 128),
              packed_key(str(a), "train", 64, max_tokens=4096), packed_key(str(a), "train", 64, text_column="body"),
              packed_key("org/data", "train", 64, dataset_config="en"), packed_key("org/data", "train", 64)]
    assert len({base, *others}) == len(others) + 1


def test_cached_blocks_makes_once_then_reads(tmp_path):
    calls = []

    def make():
        calls.append(1)
        return torch.arange(12).reshape(3, 4)

    first = cached_blocks(tmp_path, "k", make)
    second = cached_blocks(tmp_path, "k", make)
    assert torch.equal(first, second) and len(calls) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["packed-k.pt"]  # no temp file left behind
