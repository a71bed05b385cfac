"""benchmarks/accelerator.sh --cpu: the accelerator benchmark's code path at tiny sizes, end to end (CI smoke
test; the figures themselves are only meaningful on a GPU)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hf_optquant.optim import OPTIMIZERS

ROOT = Path(__file__).resolve().parents[1]


def test_accelerator_benchmark_cpu_mode_prints_one_table_and_writes_every_figure(tmp_path):
    out = tmp_path / "acc.json"
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "accelerator.sh"), "--cpu", "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    res = json.loads(out.read_text())
    rows = res["optimizers"]
    assert [(r["preset"], r["optimizer"]) for r in rows] == [(p, o) for p in ("125M", "350M") for o in OPTIMIZERS]
    for r in rows:
        assert r["step_s"] > 0 and r["x_adamw"] > 0 and r["mfu"] is None and r["peak_mib"] is None, r
        assert (r["x_adamw"] == 1.0) == (r["optimizer"] == "adamw")
    assert res["qat"]["qat_step_s"] > 0 and res["qat"]["x_fp"] > 0
    assert res["gptq"]["gptq_s"] > 0 and res["abc"]["x_forward"] > 1  # four passes cannot beat one forward
    table = run.stdout
    assert table.count("\n") >= len(rows) + 5 and "QuEST W4A4" in table and "GPTQ" in table and "ABC" in table


def test_accelerator_benchmark_without_a_gpu_says_so_in_one_line():
    import torch

    if torch.cuda.is_available():
        return
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "accelerator.sh")], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "device:" in run.stderr and "--cpu" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
