"""Bad input to the optimizer API: one ConfigError naming the field and the fix."""
from __future__ import annotations

import pytest
import torch

from hf_optquant.errors import ConfigError
from hf_optquant.models import build_model
from hf_optquant.optim import OPTIMIZERS, build_optimizer, optimizer_hparams


@pytest.fixture(scope="module")
def model():
    return build_model("tiny-1", vocab_size=64, seed=0)


def test_unknown_optimizer_lists_the_valid_names(model):
    with pytest.raises(ConfigError) as exc:
        build_optimizer("lion", model)
    assert exc.value.field == "optimizer" and "'lion'" in str(exc.value)
    assert all(name in exc.value.fix for name in OPTIMIZERS)


def test_unknown_kwarg_names_optimizer_key_and_valid_keys(model):
    with pytest.raises(ConfigError) as exc:
        build_optimizer("muon", model, betas=(0.9, 0.9))
    err = exc.value
    assert err.field == "betas" and "'muon'" in err.problem
    assert "momentum" in err.fix and "ns_steps" in err.fix and "\n" not in str(err)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("lr", [-1.0, 0.0, float("nan")])
def test_non_positive_lr(name, lr, model):
    with pytest.raises(ConfigError) as exc:
        build_optimizer(name, model, lr=lr)
    assert exc.value.field == "learning_rate"


@pytest.mark.parametrize(
    "name, overrides, field",
    [
        ("shampoo", {"grafting": "adamw"}, "grafting"),
        ("shampoo", {"start_preconditioning_step": 0}, "start_preconditioning_step"),
        ("adamw", {"weight_decay": -0.1}, "weight_decay"),
        ("adamw", {"betas": (0.9, 1.5)}, "betas"),
        ("muon", {"embed_lr": 0}, "embed_lr"),
        ("muon", {"adjust_lr_fn": "fancy"}, "adjust_lr_fn"),
        ("muon", {"ns_steps": 0}, "ns_steps"),
        ("soap", {"precondition_frequency": 2.5}, "precondition_frequency"),
        ("psgd", {"side_optimizer": "lion"}, "side_optimizer"),
        ("scion", {"momentum": 0.0}, "momentum"),
    ],
)
def test_bad_hyperparameter_values(name, overrides, field):
    with pytest.raises(ConfigError) as exc:
        optimizer_hparams(name, **overrides)
    assert exc.value.field == field and exc.value.fix


@pytest.mark.parametrize("module", [torch.nn.LayerNorm(4), torch.nn.Embedding(10, 4)])
def test_model_without_hidden_matrices(module):
    if isinstance(module, torch.nn.Embedding):
        module.get_input_embeddings = lambda: module  # an HF-style model made of an embedding only
    with pytest.raises(ConfigError) as exc:
        build_optimizer("adamw", module)
    assert exc.value.field == "model" and "linear layers" in exc.value.fix
