"""PTQ math: RTN against float64 references, GPTQ against a textbook implementation written here."""
from __future__ import annotations

import pytest
import torch

from hf_optquant.ptq import dampen, gptq_quantize, hessian_update, reconstruction_error
from hf_optquant.quant import dequantize_rtn, quantize_rtn


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("gran, width", [("row", 32), ("group:8", 8), ("tensor", 16 * 32)])
def test_rtn_matches_float64_reference(bits, gran, width):
    torch.manual_seed(bits)
    w = torch.randn(16, 32, dtype=torch.float64) * torch.rand(16, 1, dtype=torch.float64) * 3
    q, s = quantize_rtn(w, bits, gran)
    flat = w.reshape(-1, width)
    ref_s = flat.abs().amax(1, keepdim=True) / ((2**bits - 1) / 2)
    ref_q = torch.clamp(torch.round(flat / ref_s), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert torch.equal(q.reshape(-1, width), ref_q)
    torch.testing.assert_close(s.reshape(-1, 1), ref_s, rtol=0, atol=0)
    deq = dequantize_rtn(q, s, gran).reshape(-1, width)
    # Half a step everywhere except the positive absmax, clamped one full step... at most 1 step.
    err = (deq - flat).abs()
    assert (err <= ref_s * 0.5 + 1e-12).float().mean() > 0.9
    assert (err <= ref_s + 1e-12).all()


def _reference_gptq(W, H, bits, damp, group=None):
    """Textbook sequential GPTQ (OBQ order): explicit inverse Hessian with rank-1 downdates after
    every column, no blocks, no Cholesky; per-group scales taken when a group starts."""
    W = W.clone().double()
    H = H.clone().double()
    H += damp * H.diag().mean() * torch.eye(H.shape[0], dtype=H.dtype)
    Hinv = torch.linalg.inv(H)
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    s = W.abs().amax(1) / ((2**bits - 1) / 2)
    scales, Q = [], torch.zeros_like(W)
    for i in range(W.shape[1]):
        if group and i % group == 0:
            s = W[:, i:i + group].abs().amax(1) / ((2**bits - 1) / 2)
            scales.append(s)
        q = torch.clamp(torch.round(W[:, i] / s), lo, hi)
        Q[:, i] = q
        err = (W[:, i] - q * s) / Hinv[i, i]
        W[:, i:] -= err.unsqueeze(1) * Hinv[i, i:].unsqueeze(0)
        Hinv = Hinv - Hinv[:, i:i + 1] @ Hinv[i:i + 1, :] / Hinv[i, i]
    return Q, (torch.stack(scales, 1) if group else s.unsqueeze(1))


@pytest.fixture(scope="module")
def layer():
    torch.manual_seed(0)
    W = torch.randn(24, 64, dtype=torch.float64)
    # Correlated inputs with an outlier channel: the case where error feedback pays off.
    X = torch.randn(512, 64, dtype=torch.float64) @ torch.randn(64, 64, dtype=torch.float64)
    X[:, 3] *= 8
    H, n = hessian_update(None, 0, X[:200])
    H, n = hessian_update(H, n, X[200:])  # running mean over two batches
    return W, X, H


def _out_err(W, Wq, X):
    return float(((X @ (W - Wq).T) ** 2).mean())


def test_hessian_is_running_mean(layer):
    _, X, H = layer
    torch.testing.assert_close(H, 2 * X.T @ X / X.shape[0])


def test_gptq_row_matches_reference_and_beats_rtn(layer):
    W, X, H = layer
    q, s = gptq_quantize(W, H, 4, "row", block_size=16, damp=0.01)
    q_ref, s_ref = _reference_gptq(W, H, 4, 0.01)
    assert (q == q_ref).double().mean() > 0.99  # float rounding may flip a code on a boundary
    torch.testing.assert_close(s, s_ref)
    e_gptq = _out_err(W, dequantize_rtn(q, s, "row"), X)
    e_rtn = _out_err(W, dequantize_rtn(*quantize_rtn(W, 4, "row"), "row"), X)
    assert e_gptq < 0.8 * e_rtn, (e_gptq, e_rtn)
    # reconstruction_error is the same quantity computed from H alone
    Wq = dequantize_rtn(q, s, "row")
    assert reconstruction_error(W, Wq, H) == pytest.approx(_out_err(W, Wq, X), rel=1e-9)


def test_gptq_group_matches_reference(layer):
    W, X, H = layer
    q, s = gptq_quantize(W, H, 3, "group:16", block_size=40, damp=0.01)  # block not a multiple of the group
    q_ref, s_ref = _reference_gptq(W, H, 3, 0.01, group=16)
    assert (q == q_ref).double().mean() > 0.99
    torch.testing.assert_close(s, s_ref, rtol=1e-6, atol=1e-9)
    e_rtn = _out_err(W, dequantize_rtn(*quantize_rtn(W, 3, "group:16"), "group:16"), X)
    assert _out_err(W, dequantize_rtn(q, s, "group:16"), X) < e_rtn


def test_gptq_act_order_static_groups(layer):
    W, X, H = layer
    q, s = gptq_quantize(W, H, 4, "group:16", act_order=True)
    # static groups: the scales are RTN's scales of the original weights, codes in natural order
    torch.testing.assert_close(s, quantize_rtn(W, 4, "group:16")[1])
    assert q.abs().max() <= 8 and torch.equal(q, q.round())
    e_rtn = _out_err(W, dequantize_rtn(*quantize_rtn(W, 4, "group:16"), "group:16"), X)
    assert _out_err(W, dequantize_rtn(q, s, "group:16"), X) < e_rtn


def test_dead_inputs_are_zeroed():
    torch.manual_seed(1)
    X = torch.randn(128, 8, dtype=torch.float64)
    X[:, 2] = 0
    H, _ = hessian_update(None, 0, X)
    Hd, dead = dampen(H, 0.01)
    assert dead.tolist() == [i == 2 for i in range(8)] and Hd[2, 2] > 1
    q, _ = gptq_quantize(torch.randn(4, 8, dtype=torch.float64), H, 4, "row")
    assert (q[:, 2] == 0).all()
