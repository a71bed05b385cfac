"""Checkpoint round trip, LR schedulers over the combined optimizer, and Muon's reduction to
hand-built torch optimizers."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from hf_optquant.models import build_model
from hf_optquant.optim import OPTIMIZERS, build_optimizer, optimizer_hparams, route_parameters

V = 128


def _model():
    return build_model("tiny-1", vocab_size=V, seed=0)


def _steps(model, opt, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randint(0, V, (4, 16), generator=g)
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()


def _through_file(state: dict) -> dict:
    # As HF Trainer does: torch.save, then torch.load with weights_only=True.
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_round_trip_continues_bit_exact(name):
    # Shampoo reaches its first preconditioner at step 20: cross it after the resume point.
    k, rest = (16, 6) if name == "shampoo" else (4, 3)
    overrides = {"precondition_frequency": 2} if name == "soap" else {}
    torch.manual_seed(0)
    np.random.seed(0)
    a = _model()
    oa = build_optimizer(name, a, **overrides)
    _steps(a, oa, k)
    b = _model()
    b.load_state_dict(a.state_dict())
    ob = build_optimizer(name, b, **overrides)
    ob.load_state_dict(_through_file(oa.state_dict()))
    # PSGD draws its preconditioner probe from torch's RNG and its balancing coin from numpy's;
    # HF Trainer checkpoints both (rng_state.pth), so restoring them makes the resume exact.
    rng = torch.get_rng_state(), np.random.get_state()
    _steps(a, oa, rest, seed=1)
    torch.set_rng_state(rng[0])
    np.random.set_state(rng[1])
    _steps(b, ob, rest, seed=1)
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), f"{name}: {n} differs after resume"
    assert [g["lr"] for g in oa.param_groups] == [g["lr"] for g in ob.param_groups]


def test_load_rejects_a_different_optimizer():
    oa = build_optimizer("adamw", _model())
    ob = build_optimizer("muon", _model())
    with pytest.raises(ValueError, match="expected"):
        ob.load_state_dict(oa.state_dict())


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_lambda_lr_scales_every_group_from_its_own_base(name):
    m = _model()
    opt = build_optimizer(name, m)
    hp = optimizer_hparams(name)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 if s == 0 else 0.25)
    bases = {g["name"]: g["initial_lr"] for g in opt.param_groups}
    assert bases["hidden"] == hp["lr"]
    for group in ("embed", "gain"):
        expected = hp.get(f"{group}_lr") or hp["lr"]
        assert bases[group] == expected, (name, group)
    assert all(g["lr"] == pytest.approx(0.5 * g["initial_lr"]) for g in opt.param_groups)
    _steps(m, opt, 1)
    sched.step()
    assert all(g["lr"] == pytest.approx(0.25 * g["initial_lr"]) for g in opt.param_groups)
    # The groups the scheduler sees are the very dicts the library optimizers step with.
    inner = [g for o in opt.optimizers.values() for g in o.param_groups]
    assert len(inner) == len(opt.param_groups) and all(x is y for x, y in zip(inner, opt.param_groups))


def test_muon_follows_hand_built_torch_muon_and_adamw():
    m1, m2 = _model(), _model()
    opt = build_optimizer("muon", m1)
    hp = optimizer_hparams("muon")
    g2 = route_parameters(m2)
    muon = torch.optim.Muon(g2["hidden"], lr=hp["lr"], weight_decay=0.0, momentum=0.95, nesterov=True,
                            ns_coefficients=(3.4445, -4.7750, 2.0315), ns_steps=5, adjust_lr_fn="original")
    adamw = torch.optim.AdamW([{"params": g2["embed"], "lr": 3e-3}, {"params": g2["gain"], "lr": 3e-3}],
                              betas=(0.9, 0.95), eps=1e-6, weight_decay=0.0)
    g1 = route_parameters(m1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        x = torch.randint(0, V, (4, 16), generator=gen)
        m1(input_ids=x, labels=x).loss.backward()
        # Drive the references with the gradients of the run under test.
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            p2.grad = p1.grad.clone()
        opt.step()
        muon.step()
        adamw.step()
        for o in (opt, muon, adamw):
            o.zero_grad()
        for k in ("hidden", "embed", "gain"):
            for p1, p2 in zip(g1[k], g2[k]):
                assert torch.equal(p1, p2), k


def test_adamw_all_groups_follow_the_given_lr():
    opt = build_optimizer("adamw", _model(), lr=1e-2)
    assert {g["name"]: g["lr"] for g in opt.param_groups} == {"hidden": 1e-2, "embed": 1e-2, "gain": 1e-2}
    opt = build_optimizer("adamw", _model(), lr=1e-2, weight_decay=0.1)
    # The authors' code (ant) gives every group the weight decay, side groups included.
    assert {g["name"]: g["weight_decay"] for g in opt.param_groups} == {"hidden": 0.1, "embed": 0.1, "gain": 0.1}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_hparams_are_json_and_every_override_reaches_the_library(name):
    hp = optimizer_hparams(name, lr=0.5, weight_decay=0.25)
    assert json.loads(json.dumps(hp)) == hp
    opt = build_optimizer(name, _model(), lr=0.5, weight_decay=0.25)
    hidden = next(g for g in opt.param_groups if g["name"] == "hidden")
    assert hidden["lr"] == 0.5 and hidden["weight_decay"] == 0.25


def test_zero_grad_clears_every_group():
    m = _model()
    opt = build_optimizer("scion", m)
    x = torch.randint(0, V, (2, 8))
    m(input_ids=x, labels=x).loss.backward()
    opt.zero_grad()
    assert all(p.grad is None for p in m.parameters())
