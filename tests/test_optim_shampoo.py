"""Shampoo (Meta's DistributedShampoo + Adam grafting, our code) against a float64 reference of the same
formulas written here, torch's AdamW in the graft-only phase, and its tensor-only state."""
from __future__ import annotations

import io
import math

import pytest
import torch

import hf_optquant.optim.shampoo as shampoo_module
from hf_optquant.optim.shampoo import Shampoo, block_shape, matrix_inverse_roots, split_blocks

CFG = dict(lr=0.05, betas=(0.9, 0.95), epsilon=1e-3, weight_decay=0.1, precondition_frequency=3,
           start_preconditioning_step=3, grafting="adam", grafting_beta2=0.9, grafting_epsilon=1e-8)


def _grad(shape, step, i):
    g = torch.Generator().manual_seed(1000 * step + i)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def _root64(a: torch.Tensor, root: int, eps: float) -> torch.Tensor:
    lam, q = torch.linalg.eigh(a + eps * torch.eye(a.shape[0], dtype=a.dtype))
    if lam.min() < eps:
        lam = lam - lam.min() + eps
    return q @ torch.diag(lam ** (-1.0 / root)) @ q.T


def _reference(w0: list[torch.Tensor], steps: int, cfg: dict, max_dim: int, momentum=0.0, nesterov=False):
    """The update of Meta's Shampoo written out in float64, one parameter and one block at a time."""
    b1, b2 = cfg["betas"]
    gb2, geps, eps, lr, wd = cfg["grafting_beta2"], cfg["grafting_epsilon"], cfg["epsilon"], cfg["lr"], cfg["weight_decay"]
    start, freq = cfg["start_preconditioning_step"], cfg["precondition_frequency"]
    ws = [w.clone() for w in w0]
    st = [dict(m=torch.zeros_like(w), v=torch.zeros_like(w), mom=torch.zeros_like(w), L={}, P={}) for w in ws]
    for t in range(1, steps + 1):
        for i, (w, s) in enumerate(zip(ws, st)):
            g = _grad(w.shape, t, i)
            gv = g.reshape(block_shape(tuple(w.shape), max_dim, False))
            for b, gb in enumerate(split_blocks(gv, max_dim)):
                for k in range(gb.dim()):
                    mat = gb.movedim(k, 0).reshape(gb.shape[k], -1)
                    s["L"][b, k] = b2 * s["L"].get((b, k), 0) + (1 - b2) * mat @ mat.T
                    if (t % freq == 0 and t > start) or t == start:
                        s["P"][b, k] = _root64(s["L"][b, k] / (1 - b2 ** t), 2 * gb.dim(), eps)
            s["v"] = gb2 * s["v"] + (1 - gb2) * g * g
            s["m"] = b1 * s["m"] + (1 - b1) * g
            m = s["m"] / (1 - b1 ** t)
            graft = m / ((s["v"] / (1 - gb2 ** t)).sqrt() + geps)
            if t < start:
                d = graft
            else:
                d = torch.empty_like(m)
                mv, dv, gv_ = (x.reshape(gv.shape) for x in (m, d, graft))
                for b, (mb, db, grb) in enumerate(zip(split_blocks(mv, max_dim), split_blocks(dv, max_dim),
                                                      split_blocks(gv_, max_dim))):
                    x = mb
                    for k in range(mb.dim()):  # P_k acting on dim k
                        x = torch.tensordot(s["P"][b, k], x.movedim(k, 0), dims=([1], [0])).movedim(0, k)
                    db.copy_(x * grb.norm() / (x.norm() + 1e-16))
            d = d + wd * w
            if momentum:
                s["mom"] = momentum * s["mom"] + d
                d = d + momentum * s["mom"] if nesterov else s["mom"]
            w -= lr * d
    return ws


def _run(w0, steps, cfg, **kw):
    ps = [torch.nn.Parameter(w.clone()) for w in w0]
    opt = Shampoo(ps, **cfg, **kw)
    for t in range(1, steps + 1):
        for i, p in enumerate(ps):
            p.grad = _grad(p.shape, t, i).to(p.dtype)
        opt.step()
    return [p.detach() for p in ps], opt


def _rel(a, b, w0):
    return max(((x - y).norm() / (y - z).norm()).item() for x, y, z in zip(a, b, w0))


@pytest.mark.parametrize("momentum,nesterov,batch_max_dim", [(0.0, False, 1024), (0.5, True, 1024), (0.0, False, 0)])
def test_matches_float64_reference_with_blocks_and_1d(momentum, nesterov, batch_max_dim, monkeypatch):
    # batch_max_dim 0: same-shaped blocks preconditioned one by one (the path of large blocks) instead of batched
    monkeypatch.setattr(shampoo_module, "_BATCH_MAX_DIM", batch_max_dim)
    torch.manual_seed(0)
    # (6, 4) twice (same-shaped blocks: batched) and (4, 6): one block each; (7, 5): blocks of <= 5 rows;
    # (5,): one full-matrix factor; (2, 3, 4): order 3
    w0 = [torch.randn(s, dtype=torch.float64) for s in [(6, 4), (4, 6), (7, 5), (5,), (2, 3, 4), (6, 4)]]
    ours, opt = _run(w0, 10, CFG, max_preconditioner_dim=5, momentum=momentum, use_nesterov=nesterov)
    ref = _reference(w0, 10, CFG, 5, momentum=momentum, nesterov=nesterov)
    assert _rel(ours, ref, w0) < 1e-4  # fp32 factors vs float64
    st = opt.state[next(iter(opt.state))]
    assert st["factor.0.0"].dtype == torch.float32
    blocks = {k.split(".")[1] for k in opt.state[opt.param_groups[0]["params"][2]] if k.startswith("factor.")}
    assert blocks == {"0", "1"}  # 7 rows -> 5 + 2


def test_graft_only_phase_is_adamw_and_preconditioning_then_changes_the_step():
    torch.manual_seed(1)
    w0 = [torch.randn(s, dtype=torch.float64) for s in [(6, 4), (5,)]]
    cfg = {**CFG, "start_preconditioning_step": 6, "precondition_frequency": 3}
    ps = [torch.nn.Parameter(w.clone()) for w in w0]
    adamw = torch.optim.AdamW(ps, lr=cfg["lr"], betas=(cfg["betas"][0], cfg["grafting_beta2"]),
                              eps=cfg["grafting_epsilon"], weight_decay=cfg["weight_decay"])
    for steps in (5, 6):
        for p, w in zip(ps, w0):
            p.data.copy_(w)
        adamw.state.clear()
        for t in range(1, steps + 1):
            for i, p in enumerate(ps):
                p.grad = _grad(p.shape, t, i)
            adamw.step()
        ours, _ = _run(w0, steps, cfg)
        diff = max((a - b).abs().max().item() for a, b in zip(ours, ps))
        if steps == 5:  # steps 1..5 < start: the Adam graft alone, i.e. AdamW
            assert diff < 1e-12
        else:  # step 6 preconditions (the 1-D gain too: a full-matrix factor)
            assert all((a - b).abs().max().item() > 1e-4 for a, b in zip(ours, ps))


def test_stacked_inverse_roots_match_float64():
    g = torch.Generator().manual_seed(0)
    mats = [torch.randn(8, 20, generator=g, dtype=torch.float64) for _ in range(3)]
    a = torch.stack([m @ m.T / 20 for m in mats])
    got = matrix_inverse_roots(a.float(), 4, 1e-10).double()
    for x, y in zip(got, a):
        want = _root64(y, 4, 1e-10)
        assert ((x - want).norm() / want.norm()).item() < 1e-4
        assert torch.allclose(x @ x @ x @ x @ y, torch.eye(8, dtype=torch.float64), atol=1e-3)


def test_block_shape_is_metas_merge_rule():
    # The examples of Meta's merge_small_dims docstring (target dimensionality 1).
    assert block_shape((1, 2, 5, 1), 10, True) == (10,)
    assert block_shape((1, 2, 5, 1), 1, True) == (2, 5)
    assert block_shape((32, 3, 64, 64), 8192, True) == (96, 4096)
    assert block_shape((64, 192), 12288, True) == (12288,)
    assert block_shape((64, 192), 12288, False) == (64, 192)
    assert [tuple(b.shape) for b in split_blocks(torch.zeros(7, 5), 3)] == [(3, 3), (3, 2), (3, 3), (3, 2), (1, 3), (1, 2)]


def test_state_is_tensor_only_and_resumes_exactly_with_fp32_factors():
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Linear(8, 3)).to(torch.bfloat16)
    opt = Shampoo(model.parameters(), **{**CFG, "epsilon": 1e-6})
    x = torch.randn(16, 6, dtype=torch.bfloat16)

    def step():
        opt.zero_grad()
        model(x).float().pow(2).mean().backward()
        opt.step()

    for _ in range(4):
        step()
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "model": model.state_dict()}, buf)
    for _ in range(4):
        step()
    want = [p.detach().clone() for p in model.parameters()]
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    model.load_state_dict(saved["model"])
    opt2 = Shampoo(model.parameters(), **{**CFG, "epsilon": 1e-6})
    opt2.load_state_dict(saved["opt"])
    assert all(v.dtype == torch.float32 for s in opt2.state.values() for k, v in s.items() if "factor" in k)
    opt = opt2
    for _ in range(4):
        step()
    assert all(torch.equal(a, b) for a, b in zip(want, model.parameters()))


def test_rejects_bad_settings():
    p = [torch.nn.Parameter(torch.zeros(2, 2))]
    for kw in ({"grafting": "adamw"}, {"epsilon": 0.0}, {"betas": (1.0, 0.9)}, {"precondition_frequency": 0}):
        with pytest.raises(ValueError):
            Shampoo(p, **kw)
    assert math.isfinite(Shampoo(p).defaults["lr"])
