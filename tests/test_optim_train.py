"""Each of the six optimizers trains a tiny OLMo2 model on PTB: loss falls, every trainable parameter moves."""
from __future__ import annotations

import pytest
import torch

from hf_optquant.models import build_model
from hf_optquant.optim import OPTIMIZERS, build_optimizer

STEPS = 30


def _train(model, opt, blocks, steps=STEPS, batch=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x = blocks[torch.randint(0, len(blocks), (batch,), generator=g)]
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def _eval_loss(model, blocks):
    with torch.no_grad():
        return model(input_ids=blocks[:32], labels=blocks[:32]).loss.item()


# With the authors' routing PSGD trains the embedding at its hidden lr: 1e-3 moves it too little in 30 steps.
_CASES = [(n, {"lr": 1e-2} if n == "psgd" else {}) for n in OPTIMIZERS]
_CASES += [("soap", {"side_optimizer": "adamw"}), ("shampoo", {"side_optimizer": "adamw"})]


@pytest.mark.parametrize("name,overrides", _CASES)
def test_optimizer_trains_every_parameter(name, overrides, tokenizer, lm_data):
    train, val, _ = lm_data
    torch.manual_seed(0)
    model = build_model("tiny-1", vocab_size=len(tokenizer), seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    val_before = _eval_loss(model, val.blocks)
    opt = build_optimizer(name, model, **overrides)
    losses = _train(model, opt, train.blocks)
    assert all(torch.isfinite(torch.tensor(losses)))
    # A uniform guess over the vocabulary gives ln(V); the start is near it, the end clearly below.
    assert sum(losses[-5:]) / 5 < losses[0] - 0.5, f"{name}: {losses[0]:.3f} -> {losses[-5:]}"
    assert _eval_loss(model, val.blocks) < val_before - 0.5
    unchanged = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p, before[n])]
    assert not unchanged, f"{name} left {unchanged} untouched"


def test_lora_model_trains_only_adapters(tokenizer, lm_data):
    from peft import LoraConfig, get_peft_model

    base = build_model("tiny-1", vocab_size=len(tokenizer), seed=0)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer("muon", model)
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(p.requires_grad for p in model.parameters())
    _train(model, opt, lm_data[0].blocks, steps=5)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) != p.requires_grad, n  # adapters moved, frozen base did not
