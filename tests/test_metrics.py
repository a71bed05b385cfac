"""Diagnostics: MMR/kurtosis against numpy/scipy, the ABC decomposition's identities, a hand-derived case,
gain factors, CLI end to end and bad input."""
from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from scipy import stats

from hf_optquant.cli import main
from hf_optquant.metrics import (
    ABCEngine,
    GainAccumulator,
    OutlierAccumulator,
    Stage,
    abc_sums,
    abc_vectors,
    diagnose_models,
    excess_kurtosis,
    gain_from_sums,
    gain_sums,
    mmr_per_token,
)
from hf_optquant.models import build_model
from hf_optquant.ptq import PTQConfig, quantize_model


def _tiny(seed=0):
    torch.manual_seed(seed)
    return build_model("tiny-2", vocab_size=300).double().eval()


def test_mmr_and_kurtosis_match_numpy_scipy_and_stream():
    rng = np.random.default_rng(0)
    x = rng.standard_t(df=4, size=(3, 50, 64))
    flat = x.reshape(-1, 64)
    acc = OutlierAccumulator()
    for batch in x:  # three batches streamed
        acc.update(torch.from_numpy(batch))
    s = acc.summary()
    a = np.abs(flat)
    lower_median = np.sort(a, axis=1)[:, (a.shape[1] - 1) // 2]  # torch.median's, the authors' (ant's)
    assert s["mmr"] == pytest.approx(np.mean(a.max(1) / lower_median), rel=1e-12)
    assert s["mmr_mean"] == pytest.approx(np.mean(a.max(1) / a.mean(1)), rel=1e-12)
    assert s["kurtosis"] == pytest.approx(stats.kurtosis(flat.ravel()), rel=1e-9)
    assert s["kurtosis_channel_rms"] == pytest.approx(stats.kurtosis(np.sqrt((flat ** 2).mean(0))), rel=1e-9)
    assert excess_kurtosis(torch.from_numpy(flat)) == pytest.approx(s["kurtosis"], rel=1e-12)
    # Even widths with ties around the middle: the lower of the two middle values, never their mean.
    ties = np.array([[1.0, 1, 1, 1], [0.5, 0.5, 3, 3], [2, 1, 1, 5], [4, 1, 4, 4], [3, 1, 2, 9], [-2, 2, 0, 1]])
    want = np.abs(ties).max(1) / np.array([1.0, 0.5, 1, 4, 2, 1])
    assert np.allclose(mmr_per_token(torch.from_numpy(ties)).numpy(), want, rtol=1e-15, atol=0)
    # A token whose median |x| is 0 has no MMR (NaN), and is left out of the average.
    z = torch.tensor([[0.0, 0.0, 0.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    r = mmr_per_token(z)
    assert torch.isnan(r[0]) and r[1] == pytest.approx(4 / 2)  # lower median of (1, 2, 3, 4): 2


def test_residual_stream_mmr_is_the_authors_metric_per_layer_with_a_median_over_layers():
    # The default outlier site is the residual stream: each decoder block's input and the final norm's input,
    # per token max|x| / torch.median(|x|) (the lower median), averaged over tokens: ant's formula, written
    # here on activations recorded by plain forward hooks over the whole model (float64).
    model = _tiny(seed=3)
    qmodel, _ = quantize_model(model, PTQConfig(w_bits=4, a_bits=4))
    ids = torch.randint(0, 300, (4, 24), generator=torch.Generator().manual_seed(2))
    seen: dict[str, list] = {}
    sites = [(f"layers.{i}", b) for i, b in enumerate(model.model.layers)] + [("norm", model.model.norm)]
    hooks = [m.register_forward_pre_hook(lambda m, a, kw, n=n: seen.setdefault(n, []).append(
        (a[0] if a else kw["hidden_states"]).detach()), with_kwargs=True) for n, m in sites]
    with torch.no_grad():
        for i in (0, 2):
            model(input_ids=ids[i:i + 2])
    for h in hooks:
        h.remove()
    res = diagnose_models(model, qmodel, ids, batch_size=2, progress=False)
    s, rows = res["summary"], res["outliers"]
    assert [r["module"] for r in rows] == [n for n, _ in sites] and {r["site"] for r in rows} == {"residual"}
    for r in rows:
        feats = torch.cat(seen[r["module"]]).reshape(-1, 64)
        want = (feats.abs().max(dim=1).values / feats.abs().median(dim=1).values).mean()
        assert r["mmr"] == pytest.approx(float(want), rel=1e-12), r["module"]
        assert r["kurtosis"] == pytest.approx(stats.kurtosis(feats.flatten().numpy()), rel=1e-9)
        assert r["tokens"] == ids.numel()
    assert s["outlier_site"] == "residual"
    assert s["mmr"] == pytest.approx(float(np.median([r["mmr"] for r in rows])), rel=1e-15)
    assert [r["mmr"] for r in s["outliers_per_layer"]] == [r["mmr"] for r in rows]
    # both: the residual stream stays the plain keys; every linear input is added with a _linear suffix, and
    # the ReLU^2 down-projection inputs there are mostly exact zeros (median 0 -> NaN or huge).
    both = diagnose_models(model, qmodel, ids, batch_size=2, progress=False, outliers="both")
    assert both["summary"]["mmr"] == s["mmr"]
    # The default runs each block's four passes as two of twice the batch; with linear-input hooks they run
    # one by one: the same ABC terms to float64 rounding.
    for fast, slow in zip(res["layers"], both["layers"], strict=True):
        for k in ("R", "A", "B", "C", "G"):
            assert fast[k] == pytest.approx(slow[k], rel=1e-10, abs=1e-15, nan_ok=True), (fast["module"], k)
    lin = [r for r in both["outliers"] if r["site"] == "linear"]
    assert len(lin) == 2 * 7 + 1 and "mmr_linear" in both["summary"]
    down = [r["mmr"] for r in lin if r["module"].endswith("down_proj")]
    others = [r["mmr"] for r in lin if not r["module"].endswith("down_proj")]
    assert all(not np.isfinite(d) or d > 10 * max(others) for d in down), (down, others)
    none = diagnose_models(model, qmodel, ids, batch_size=2, progress=False, outliers="none")
    assert none["outliers"] == [] and np.isnan(none["summary"]["mmr"])
    assert none["summary"]["r_l"] == s["r_l"]  # the ABC terms do not depend on the outlier site


def test_layer_aggregate_is_not_decided_by_one_degenerate_layer():
    from hf_optquant.metrics import aggregate_layers

    typical = [3.0, 4.0, 5.0, 6.0]
    assert aggregate_layers(typical + [2e9]) == 5.0
    assert aggregate_layers(typical + [float("nan"), None]) == 4.5
    assert np.isnan(aggregate_layers([float("nan")]))
    # a mean of logs is not robust: it moves by orders of magnitude with that layer
    assert np.exp(np.mean(np.log(typical + [2e9]))) > 100


def test_hand_made_two_layer_network_matches_hand_derivation():
    def lin(w):
        m = torch.nn.Linear(2, 2, bias=False).double()
        m.weight.data = torch.tensor(w, dtype=torch.float64)
        return m

    l1, q1 = lin([[1, 0], [0, 1]]), lin([[1, 0], [0, 1.5]])
    l2, q2 = lin([[1, 1], [0, 1]]), lin([[1, 1], [0, 2]])
    eng = ABCEngine(outliers=False)
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    h, hq = eng.run_stage(Stage("l1", l1, q1), x, x)
    eng.run_stage(Stage("l2", l2, q2), h, hq)
    rows = {r["module"]: r for r in eng.table()}
    # l1: identical inputs, so all error is added: h = (1, 2), hq = (1, 3), d = (0, 1), |h|^2 = 5.
    assert rows["l1"]["A"] == 0 and rows["l1"]["C"] == 0
    assert rows["l1"]["B"] == pytest.approx(1 / 5) and rows["l1"]["R"] == pytest.approx(1 / 5)
    # l2: f(h) = (3, 2), f(hq) = (4, 3), fq(h) = (3, 4), fq(hq) = (4, 6);
    # a = ((1, 2) + (1, 1)) / 2 = (1, 1.5), b = ((0, 3) + (0, 2)) / 2 = (0, 2.5), |f(h)|^2 = 13.
    r2 = rows["l2"]
    assert r2["A"] == pytest.approx(3.25 / 13)
    assert r2["B"] == pytest.approx(6.25 / 13)
    assert r2["C"] == pytest.approx(7.5 / 13)
    assert r2["R"] == pytest.approx(17 / 13)
    assert r2["G"] == pytest.approx((3.25 / 13) / (1 / 5))  # A_l / R_{l-1} = 1.25
    # G1 from the spectral norms; G2 = (|Md|^2/|d|^2) / (|Wh|^2/|h|^2) / G1 with Md = (1, 1.5), Wh = (3, 2).
    g1 = (np.linalg.norm([[1, 1], [0, 1.5]], 2) / np.linalg.norm([[1, 1], [0, 1]], 2)) ** 2
    assert r2["G1"] == pytest.approx(g1)
    assert r2["G2"] == pytest.approx((3.25 / 1) / (13 / 5) / g1)


def test_abc_identities_hold_to_float64_precision_on_a_tiny_model():
    model = _tiny()
    qmodel, _ = quantize_model(model, PTQConfig(w_bits=4, a_bits=4))
    ids = torch.randint(0, 300, (4, 32), generator=torch.Generator().manual_seed(1))
    res = diagnose_models(model, qmodel, ids, batch_size=2, modules="all", progress=False)
    assert len(res["layers"]) > 20  # blocks, attention, MLP, norms and every linear
    for r in res["layers"]:
        assert abs(r["A"] + r["B"] + r["C"] - r["R"]) <= 1e-12 * max(1.0, r["R"]), r["module"]
    assert res["summary"]["r_l"] > 0 and res["summary"]["delta_val_loss"] != 0
    for norm in ("token",):
        tok = diagnose_models(model, qmodel, ids, batch_size=2, modules="block", norm=norm, progress=False)
        for r in tok["layers"]:
            assert abs(r["A"] + r["B"] + r["C"] - r["R"]) <= 1e-12 * max(1.0, r["R"])


def test_abc_vectors_and_sums_against_a_direct_float64_computation():
    # a + b == fq(hq) - f(h) on a real layer of the tiny model, and abc_sums (per-token dots) against sums of
    # the explicit vectors, both reductions.
    model = _tiny()
    qmodel, _ = quantize_model(model, PTQConfig(w_bits=4, a_bits=None))
    f, fq = model.model.layers[0].mlp.up_proj, qmodel.model.layers[0].mlp.up_proj
    g = torch.Generator().manual_seed(4)
    h = torch.randn(3, 16, f.in_features, generator=g, dtype=torch.float64)
    hq = h + 0.05 * torch.randn(h.shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        outs = f(h), f(hq), fq(h), fq(hq)
    a, b, d = abc_vectors(*outs)
    assert torch.allclose(a + b, d, rtol=0, atol=1e-14) and d.abs().max() > 1e-3
    s = abc_sums(*outs, h, hq, norm="tensor")
    want = {"aa": (a * a).sum(), "bb": (b * b).sum(), "ab": (a * b).sum(), "dd": (d * d).sum(),
            "hh": (outs[0] ** 2).sum(), "in_dd": ((hq - h) ** 2).sum(), "in_hh": (h ** 2).sum()}
    for k, v in want.items():
        assert s[k] == pytest.approx(float(v), rel=1e-12), k
    t = abc_sums(*outs, norm="token")
    w = 1 / (outs[0] ** 2).sum(-1)
    assert t["aa"] == pytest.approx(float(((a * a).sum(-1) * w).sum()), rel=1e-12) and t["n"] == 48


def test_gain_accumulator_gram_path_equals_direct_sums():
    g = torch.Generator().manual_seed(5)
    W = torch.randn(64, 8, generator=g, dtype=torch.float64)  # widening 8x: the Gram path by default
    Wq = W + 0.01 * torch.randn(W.shape, generator=g, dtype=torch.float64)
    batches = [torch.randn(2, 5, 8, generator=g, dtype=torch.float64) for _ in range(3)]
    gram, direct = GainAccumulator(W, Wq), GainAccumulator(W, Wq, gram=False)
    assert gram.gram and not direct.gram
    want = dict.fromkeys(("Md", "d", "Wh", "h"), 0.0)
    for x in batches:
        xq = x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)
        gram.update(x, xq)
        direct.update(x, xq)
        for k, v in gain_sums(W, Wq, x, xq).items():
            want[k] += v
    for k in want:
        assert gram.sums()[k] == pytest.approx(want[k], rel=1e-12), k
        assert direct.sums()[k] == pytest.approx(want[k], rel=1e-12), k
    assert gain_from_sums(W, Wq, gram.sums())["G1"] == pytest.approx(
        (np.linalg.norm((W + Wq).numpy() / 2, 2) / np.linalg.norm(W.numpy(), 2)) ** 2, rel=1e-10)


def test_without_quantization_every_error_term_is_zero():
    model = _tiny()
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(2))
    res = diagnose_models(model, copy.deepcopy(model), ids, batch_size=2, modules="all", progress=False)
    for r in res["layers"]:
        assert r["A"] == r["B"] == r["C"] == r["R"] == 0.0, r["module"]
    assert all(s["R"] == 0.0 for s in res["summary"]["stages"])
    assert res["summary"]["r_l"] == 0.0 and res["summary"]["delta_val_loss"] == 0.0


def test_gain_factors_multiply_to_the_gain_under_weight_only_quantization():
    model = _tiny()
    qmodel, _ = quantize_model(model, PTQConfig(w_bits=4, a_bits=None))
    ids = torch.randint(0, 300, (4, 32), generator=torch.Generator().manual_seed(3))
    rows = diagnose_models(model, qmodel, ids, batch_size=2, modules="linear", progress=False)["layers"]
    checked = 0
    for r in rows:
        if np.isfinite(r.get("G", np.nan)) and "G1" in r:
            assert r["G1"] * r["G2"] == pytest.approx(r["G"], rel=1e-10), r["module"]
            checked += 1
    assert checked >= 6  # every linear past the first block's input (whose R_in is 0)


def _one_line(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "fix:" in err, err
    return err


def test_diagnose_and_correlate_cli_end_to_end(trained_tiny_dir, tmp_path, capsys):
    out = tmp_path / "diag"
    assert main(["diagnose", str(trained_tiny_dir), "--out", str(out), "--n-batches", "2", "--seq-len", "32",
                 "--modules", "all"]) == 0
    for f in ("summary.json", "layers.parquet", "layers.csv", "outliers.csv", "abc.png", "mmr.png"):
        assert (out / f).stat().st_size > 0, f
    s = json.loads((out / "summary.json").read_text())
    for k in ("mmr", "mmr_mean", "kurtosis", "kurtosis_channel_rms", "r_l", "r_per_layer", "outliers_per_layer"):
        assert s[k] is not None, k
    assert s["outlier_site"] == "residual" and len(s["outliers_per_layer"]) == len(s["stages"]) - 1
    assert s["delta_val_loss"] > 0  # W4A4 RTN hurts a trained model
    # Three more runs: the same summary with other metric values (correlate reads only the summaries).
    runs = [out]
    for i, (mmr, r_l, deg) in enumerate([(10.0, 0.05, 0.02), (30.0, 0.2, 0.09), (20.0, 0.4, 0.15)]):
        d = tmp_path / f"run{i}"
        d.mkdir()
        (d / "summary.json").write_text(json.dumps({**s, "mmr": mmr, "r_l": r_l, "delta_val_loss": deg}))
        runs.append(d)
    corr = tmp_path / "corr"
    assert main(["correlate", *map(str, runs), "--out", str(corr)]) == 0
    res = json.loads((corr / "correlations.json").read_text())
    ys = [s["delta_val_loss"], 0.02, 0.09, 0.15]
    xs = [s["r_l"], 0.05, 0.2, 0.4]
    assert res["metrics"]["r_l"]["pearson"] == pytest.approx(stats.pearsonr(xs, ys)[0])
    assert res["metrics"]["r_l"]["paper"] == -0.89
    assert (corr / "scatter.png").stat().st_size > 0 and (corr / "correlations.csv").exists()
    shutil.rmtree(corr)
    capsys.readouterr()
    err = _one_line(capsys, ["correlate", str(runs[0]), str(runs[1]), "--out", str(corr)])
    assert "runs:" in err and not corr.exists()


@pytest.mark.parametrize("extra, field", [
    (["--modules", "no_such_layer"], "modules"),
    (["--w-bits", "9"], "w_bits"),
    (["--n-batches", "0"], "n_batches"),
])
def test_diagnose_bad_input_one_line_nothing_written(trained_tiny_dir, tmp_path, capsys, extra, field):
    out = tmp_path / "d"
    err = _one_line(capsys, ["diagnose", str(trained_tiny_dir), "--out", str(out), "--n-batches", "1",
                             "--seq-len", "16", *extra])
    assert f"{field}:" in err
    assert not out.exists() and not list(tmp_path.glob(".d.*"))


def test_diagnose_model_dir_that_is_not_a_model(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    err = _one_line(capsys, ["diagnose", str(tmp_path / "m"), "--out", str(tmp_path / "d")])
    assert "model:" in err and not (tmp_path / "d").exists()


def test_stage_forward_must_reproduce_the_models_logits():
    # Phi keeps its final norm at model.final_layernorm: the staged forward finds it and gives the model's loss.
    # Gemma-2 soft-caps its logits after the LM head, a step the stages do not know: one clear error, not
    # silently wrong R and losses.
    from transformers import Gemma2Config, Gemma2ForCausalLM, PhiConfig, PhiForCausalLM

    from hf_optquant.errors import ConfigError

    torch.manual_seed(0)
    ids = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(6))
    phi = PhiForCausalLM(PhiConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2)).eval()
    res = diagnose_models(phi, quantize_model(phi, PTQConfig(w_bits=4, a_bits=4))[0], ids, batch_size=2,
                          progress=False)
    with torch.no_grad():
        want = float(phi(input_ids=ids, labels=ids).loss)
    assert res["summary"]["val_loss_fp"] == pytest.approx(want, rel=1e-5)
    assert res["summary"]["stages"][-2]["stage"] == "norm"
    gemma = Gemma2ForCausalLM(Gemma2Config(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                           final_logit_softcapping=3.0)).eval()
    with pytest.raises(ConfigError, match="model.*does not reproduce"):
        diagnose_models(gemma, quantize_model(gemma, PTQConfig(w_bits=4, a_bits=4))[0], ids, batch_size=2,
                        progress=False)
