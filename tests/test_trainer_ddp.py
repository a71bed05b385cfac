"""Two CPU processes (gloo) under torchrun: the same config trains, and ranks stay identical."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch


def test_ddp_two_processes_keep_parameters_identical(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(Path(__file__).with_name("ddp_worker.py")), str(tmp_path), "adamw,muon,shampoo"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    for opt in ("adamw", "muon", "shampoo"):
        assert r0[opt]["world_size"] == 2
        assert r0[opt]["changed"] and r1[opt]["changed"], opt
        assert torch.equal(torch.tensor(r0[opt]["params"]), torch.tensor(r1[opt]["params"])), opt
        losses = r0[opt]["losses"]
        assert sum(losses[-2:]) < sum(losses[:2]), (opt, losses)
