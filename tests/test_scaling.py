"""Scaling-law fits: recovery of known parameters, the Chinchilla refit, rho, LOO intervals, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hf_optquant.cli import main
from hf_optquant.scaling import (
    ChinchillaLaw,
    FitSettings,
    Points,
    PrecisionLaw,
    ReducedLaw,
    fit_results_table,
    fit_table,
    objective,
)

CHINCHILLA_CSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "chinchilla_svg_extracted.csv"
QUIET = dict(progress=False)


def _synthetic(law, sizes, tpps, precisions, noise, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for prec in precisions:
        for n in sizes:
            for tpp in tpps:
                loss = float(np.ravel(law.predict(n, n * tpp, [prec]))[0]) * float(np.exp(rng.normal(0, noise)))
                rows.append({"N": n, "D": n * tpp, "loss": loss, "precision": prec})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("form", ["chinchilla", "precision", "reduced"])
def test_gradient_matches_finite_differences(form):
    rng = np.random.default_rng(1)
    pts = Points(rng.uniform(14, 20, 12), rng.uniform(18, 24, 12), rng.uniform(0.5, 1.5, 12),
                 np.array([-1, 0, 1] * 4))
    base = {"chinchilla": [0.5, 5.0, 6.0, 0.4, 0.3], "precision": [0.5, 5.0, 6.0, 0.4, 0.3, -0.2, -0.1],
            "reduced": [0.5, 5.0, 0.4, -0.2, -0.1]}[form]
    theta = np.array(base) + rng.normal(0, 0.1, len(base))
    _, g = objective(form, theta[None], pts, 0.05, grad=True)
    eps = 1e-6

    def f(th):
        return objective(form, th[None], pts, 0.05)[0]

    fd = [(f(theta + eps * e) - f(theta - eps * e)) / (2 * eps) for e in np.eye(len(theta))]
    np.testing.assert_allclose(g[0], fd, rtol=1e-5, atol=1e-8)


def test_noise_free_chinchilla_is_recovered_exactly():
    truth = ChinchillaLaw(E=1.7, A=400.0, B=1200.0, alpha=0.34, beta=0.30)
    df = _synthetic(truth, np.geomspace(1e7, 1e10, 8), [5, 20, 80], ["full"], noise=0.0)
    res, _ = fit_table(df, form="chinchilla", settings=FitSettings(loo=False, **QUIET))
    got = res["all"]["params"]
    for k, v in truth.params.items():  # tolerance: 1e-3 relative (the optimum is exact, objective 0)
        assert got[k] == pytest.approx(v, rel=1e-3), k


def test_noisy_chinchilla_recovers_parameters_within_stated_tolerances():
    truth = ChinchillaLaw(E=1.7, A=400.0, B=1200.0, alpha=0.34, beta=0.30)
    df = _synthetic(truth, np.geomspace(1e7, 1e10, 10), [5, 20, 80], ["full"], noise=0.002, seed=3)
    res, _ = fit_table(df, form="chinchilla", settings=FitSettings(**QUIET))
    got, ci = res["all"]["params"], res["all"]["ci"]
    # 0.2% multiplicative noise on 30 points: E within 2%, exponents within 5%.
    assert got["E"] == pytest.approx(1.7, rel=0.02)
    assert got["alpha"] == pytest.approx(0.34, rel=0.05)
    assert got["beta"] == pytest.approx(0.30, rel=0.05)
    for k in ("E", "alpha", "beta"):
        lo, hi = ci[k]
        assert lo < got[k] < hi
    assert res["all"]["loo_rmse"] < 0.02


@pytest.mark.skipif(not CHINCHILLA_CSV.exists(), reason="shared reference data not beside the checkout")
def test_chinchilla_refit_reproduces_epoch_ai():
    df = pd.read_csv(CHINCHILLA_CSV)
    res, _ = fit_table(df, form="chinchilla", exclude_top_loss=5, rename={"Model Size": "N", "Training FLOP": "flops"},
                       settings=FitSettings(loo=False, **QUIET))
    got = res["all"]["params"]
    assert res["all"]["n_points"] == len(df) - 5
    # Epoch AI's published refit (Besiroglu et al. 2024): E 1.8172, alpha 0.3478, beta 0.3658.
    assert got["E"] == pytest.approx(1.8172, rel=0.01)
    assert got["alpha"] == pytest.approx(0.3478, rel=0.03)
    assert got["beta"] == pytest.approx(0.3658, rel=0.03)


@pytest.mark.parametrize("form", ["reduced", "precision"])
def test_rho_recovered_on_full_and_4bit_groups(form):
    if form == "reduced":
        truth = ReducedLaw(E=2.0, A=60.0, alpha=0.3, rho={"4bit": 0.8})
        tpps = [20]
    else:
        truth = PrecisionLaw(E=2.0, A=60.0, B=300.0, alpha=0.3, beta=0.28, rho={"4bit": 0.8})
        tpps = [10, 40]
    df = _synthetic(truth, np.geomspace(1e6, 1e9, 8), tpps, ["full", "4bit"], noise=0.001, seed=5)
    df["optimizer"] = "adamw"
    res, _ = fit_table(df, form=form, settings=FitSettings(**QUIET))
    fit = res["adamw"]
    assert fit["params"]["rho"]["4bit"] == pytest.approx(0.8, abs=0.03)
    lo, hi = fit["ci"]["rho"]["4bit"]
    assert lo < fit["params"]["rho"]["4bit"] < hi and hi < 1.0  # 4-bit is measurably less efficient


def test_loo_intervals_shrink_as_points_are_added():
    # Noise below the Huber delta keeps the loss quadratic, where the jackknife is consistent; a single draw
    # can still go the wrong way, so the widths are averaged over four draws.
    truth = ReducedLaw(E=2.0, A=60.0, alpha=0.3)
    widths = {}
    for n_sizes in (6, 36):
        per_seed = []
        for seed in range(4):
            df = _synthetic(truth, np.geomspace(1e6, 1e9, n_sizes), [20], ["full"], noise=5e-4, seed=seed)
            res, _ = fit_table(df, form="reduced", settings=FitSettings(**QUIET))
            per_seed.append({k: v[1] - v[0] for k, v in res["all"]["ci"].items()})
        widths[n_sizes] = {k: np.mean([w[k] for w in per_seed]) for k in per_seed[0]}
    for k in ("E", "A", "alpha"):
        assert widths[36][k] < 0.8 * widths[6][k], (k, widths)


def test_fit_is_deterministic_and_bootstrap_is_seeded():
    truth = ReducedLaw(E=2.0, A=60.0, alpha=0.3)
    df = _synthetic(truth, np.geomspace(1e6, 1e9, 7), [20], ["full"], noise=0.003, seed=2)
    s = FitSettings(bootstrap=20, seed=4, **QUIET)
    a, _ = fit_table(df, form="reduced", settings=s)
    b, _ = fit_table(df, form="reduced", settings=s)
    assert a == b
    assert set(a["all"]["bootstrap_ci"]) == {"E", "A", "alpha"}


def test_cli_fit_per_optimizer_from_parquet_and_dataset(tmp_path, capsys):
    from datasets import Dataset

    frames = []
    for opt, rho in (("adamw", 0.86), ("muon", 0.75)):
        df = _synthetic(ReducedLaw(E=2.0, A=60.0, alpha=0.3, rho={"4bit": rho}), np.geomspace(1e6, 1e9, 5), [20],
                        ["full", "4bit"], noise=0.001, seed=len(opt))
        df["optimizer"] = opt
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    table.to_parquet(tmp_path / "results.parquet")
    out = tmp_path / "fits" / "fit.json"
    assert main(["fit", str(tmp_path / "results.parquet"), "--form", "reduced", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res) == {"adamw", "muon"}
    for opt in res:
        assert {"form", "params", "ci", "loo_rmse", "n_points"} <= set(res[opt])
        assert res[opt]["n_points"] == 10
    assert res["adamw"]["params"]["rho"]["4bit"] > res["muon"]["params"]["rho"]["4bit"]
    assert (tmp_path / "fits" / "fit.png").stat().st_size > 1000
    # The same table as a datasets.Dataset gives the same fit.
    same = fit_results_table(Dataset.from_pandas(table), form="reduced", settings=FitSettings(**QUIET))
    assert same == res
    # The hub's card renders it with rho beside the paper's.
    from hf_optquant.hub import scaling_section

    text = scaling_section({"fits/fit.json": res})
    assert "0.863" in text and "muon" in text


def _one_line_error(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("case,field", [
    ("too_few", "points"), ("zero_n", "N"), ("negative_loss", "loss"), ("nan", "D"), ("missing", "loss"),
])
def test_bad_input_one_line_and_nothing_written(tmp_path, capsys, case, field):
    df = _synthetic(ReducedLaw(E=2.0, A=60.0, alpha=0.3), np.geomspace(1e6, 1e9, 6), [20], ["full"], 0.0)
    if case == "too_few":
        df = df.iloc[:3]
    elif case == "zero_n":
        df.loc[2, "N"] = 0
    elif case == "negative_loss":
        df.loc[1, "loss"] = -1.0
    elif case == "nan":
        df.loc[0, "D"] = np.nan
    else:
        df = df.drop(columns=["loss"])
    df.to_csv(tmp_path / "r.csv", index=False)
    out = tmp_path / "o" / "fit.json"
    err = _one_line_error(capsys, ["fit", str(tmp_path / "r.csv"), "--out", str(out)])
    assert f"error: {field}:" in err and "fix:" in err
    assert not out.exists() and not out.with_suffix(".png").exists()
