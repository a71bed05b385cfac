"""The study report's sections from hand-made records (no training): paper columns come from
hf_optquant.paper, winners are the right extremes, missing records read as words."""
from __future__ import annotations

from types import SimpleNamespace

from hf_optquant.paper import PAPER_CORRELATIONS, PAPER_RHO
from hf_optquant.study import report

CFG = SimpleNamespace(name="t", optimizers=["adamw", "shampoo", "muon"], sizes=["tiny-1", "tiny-2"],
                      ptq=[SimpleNamespace(tag="rtn-w4a4")])


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_winners_pick_the_extreme_per_size():
    loss = {("adamw", "tiny-1"): 3.0, ("shampoo", "tiny-1"): 2.0, ("muon", "tiny-1"): 4.0,
            ("adamw", "tiny-2"): 1.0, ("shampoo", "tiny-2"): 5.0, ("muon", "tiny-2"): 2.5}
    key = lambda o, s: loss[(o, s)]  # noqa: E731
    assert report._winners(CFG, min, key) == "tiny-1: **shampoo**, tiny-2: **adamw**"
    assert report._winners(CFG, max, key) == "tiny-1: **muon**, tiny-2: **shampoo**"


def test_fits_section_puts_the_papers_rho_beside_ours():
    fit = {"available": True, "form": "reduced", "qat_precision": "4bit", "fits": {
        "adamw": {"params": {"E": 1.5, "alpha": 0.25, "rho": {"4bit": 0.8}}, "ci": {"rho": {"4bit": [0.7, 0.9]}},
                  "loo_rmse": 0.01},
        "shampoo": {"params": {"E": 1.25, "alpha": 0.5, "rho": {"4bit": 0.95}}}}}
    lines = "\n".join(report._fits_section(CFG, {"fit": fit})).splitlines()
    rows = {c[0]: c for c in map(_cells, lines) if c and c[0] in CFG.optimizers}
    assert rows["adamw"][3:5] == ["0.8000", "[0.700, 0.900]"]
    assert rows["shampoo"][4:6] == ["n/a", "n/a"]  # no interval, no LOO RMSE recorded
    assert rows["muon"][1:5] == ["n/a"] * 4  # not fitted for this optimizer
    for o in CFG.optimizers:
        assert float(rows[o][6]) == PAPER_RHO[o]
    prose = next(ln for ln in lines if ln.startswith("Form: reduced"))
    top, bottom = max(PAPER_RHO, key=PAPER_RHO.get), min(PAPER_RHO, key=PAPER_RHO.get)
    assert f"has the highest rho ({PAPER_RHO[top]})" in prose and f"the lowest ({PAPER_RHO[bottom]})" in prose
    missing = report._fits_section(CFG, {"fit": {"available": False, "reason": "too few sizes"}})
    assert "Not fitted: too few sizes." in missing and "`4bit`" in missing[0]
    assert "Not fitted: no fit record." in report._fits_section(CFG, {"fit": None})


def test_correlations_section_flips_the_papers_signs_for_a_loss_target():
    corr = {"runs": [{}, {}, {}], "metrics": {m: {"pearson": 0.5, "spearman": 0.25, "pearson_ci95": [-0.5, 0.75]}
                                              for m in PAPER_CORRELATIONS}}
    lines = "\n".join(report._correlations_section({"correlations": corr, "diag": {}})).splitlines()
    rows = [_cells(ln) for ln in lines if ln.startswith("| ") and not ln.startswith("| metric")]
    assert [float(r[4]) for r in rows] == [-v for v in PAPER_CORRELATIONS.values()]
    assert all(r[2] == "[-0.50, 0.75]" for r in rows)
    prose = next(ln for ln in lines if ln.startswith("Ours:"))
    assert "over 3 runs" in prose and f"R_L {PAPER_CORRELATIONS['r_l']:+.2f}" in prose
    none = report._correlations_section({"correlations": None, "diag": {("adamw", "tiny-1"): {"reason": "no GPU"}}})
    assert "Diagnostics unavailable: no GPU" in none


def test_qat_section_is_absent_without_qat_runs():
    assert report._qat_section(CFG, {"qat": {}}) == []
