"""The study end to end on a micro grid: one-shot, kill-and-resume, print-commands + collect."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hf_optquant.cli import main

MICRO = {
    "name": "micro",
    "optimizers": ["adamw", "muon"],
    "sizes": ["tiny-1", "tiny-2"],
    "tokens_per_param": 0.12,
    "vocab_size": 300,
    "block_size": 32,
    "batch_size": 8,
    "eval_every": 8,
    "max_eval_tokens": 2048,
    "qat": {"quantizer": "quest", "w_bits": 4, "a_bits": 4, "granularity": "row", "hadamard_block": 64},
    "diagnose_batches": 1,
    "train_overrides": {"use_cpu": True},
}
CLI = [sys.executable, "-m", "hf_optquant.cli"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


def _config(tmp: Path, name: str, **over) -> Path:
    cfg = {**MICRO, "output_dir": str(tmp / name), **over}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _results(study: Path) -> pd.DataFrame:
    df = pd.read_parquet(study / "results.parquet")
    return df.sort_values("run_id").reset_index(drop=True)[["run_id", "val_loss", "delta_val_loss", "tokens"]]


@pytest.fixture(scope="module")
def one_shot(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    cfg = _config(tmp, "oneshot")
    assert main(["study", str(cfg)]) == 0
    return tmp / "oneshot"


def test_micro_study_fills_every_table(one_shot):
    report = (one_shot / "report.md").read_text()
    for heading in ("## 1. Full precision", "## 2. PTQ", "## 3. QAT", "## 4. Scaling", "## 5. Which metric"):
        assert heading in report
    assert "n/a |" not in report.split("## 4.")[0]  # tables 1-3 have every cell
    df = pd.read_parquet(one_shot / "results.parquet")
    assert len(df) == 2 * 2 * 3  # full + ptq + qat per (optimizer, size)
    assert set(df["precision"]) == {"full", "ptq", "qat"}
    assert df["val_loss"].notna().all()
    for png in ("loss_curves.png", "degradation.png"):
        assert (one_shot / png).stat().st_size > 1000
    # Finished runs are not retrained on a second invocation.
    mtimes = {p: p.stat().st_mtime for p in (one_shot / "runs").glob("*/run.json")}
    assert main(["study", str(one_shot.parent / "oneshot.yaml")]) == 0
    assert all(p.stat().st_mtime == t for p, t in mtimes.items())


def test_kill_and_resume_gives_the_same_results(one_shot, tmp_path):
    cfg = _config(tmp_path, "killed")
    study = tmp_path / "killed"
    proc = subprocess.Popen([*CLI, "study", str(cfg)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    target = study / "runs" / "muon-tiny-1-full"
    deadline = time.time() + 300
    while time.time() < deadline and not list(target.glob("checkpoint-*/trainer_state.json")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (study / "runs" / "adamw-tiny-1-full" / "run.json").exists()
    assert not (target / "run.json").exists(), "killed too late to test a resume"
    first = (study / "runs" / "adamw-tiny-1-full" / "run.json").stat().st_mtime
    assert main(["study", str(cfg)]) == 0
    assert (study / "runs" / "adamw-tiny-1-full" / "run.json").stat().st_mtime == first  # not retrained
    pd.testing.assert_frame_equal(_results(study), _results(one_shot).assign(
        run_id=lambda d: d["run_id"]), check_exact=False, rtol=1e-6, atol=1e-6)


def test_print_commands_then_collect_equals_one_shot(one_shot, tmp_path, capsys):
    cfg = _config(tmp_path, "cluster")
    assert main(["study", str(cfg), "--print-commands"]) == 0
    cmds = [ln for ln in capsys.readouterr().out.splitlines() if ln and not ln.startswith("#")]
    assert len(cmds) == 8 and all("--run" in c for c in cmds)
    for c in cmds:
        argv = shlex.split(c)
        assert argv[0] == "hf-optquant"
        assert main(argv[1:]) == 0
    assert main(["study", str(cfg), "--collect"]) == 0
    pd.testing.assert_frame_equal(_results(tmp_path / "cluster"), _results(one_shot), check_exact=False,
                                  rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("over, field", [
    ({"optimizers": ["adamw", "lamb"]}, "optimizers"),
    ({"sizes": ["tiny-9"]}, "sizes"),
    ({"tokens_per_param": 0}, "tokens_per_param"),
    ({"tokens_per_param": 0.001}, "tokens_per_param"),  # ends before the first evaluation
    ({"tasks": ["no_such_task"], "task_include_path": "/nonexistent"}, "task"),
    ({"colour": 1}, "colour"),
])
def test_bad_study_config(over, field, tmp_path, capsys):
    cfg = _config(tmp_path, "bad", **over)
    assert main(["study", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert field in err and "fix:" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


def test_common_loss_never_reached_is_marked(tmp_path):
    cfg = _config(tmp_path, "unreached", optimizers=["adamw"], sizes=["tiny-1"], precisions=["full"],
                  common_loss=0.5)
    assert main(["study", str(cfg)]) == 0
    report = (tmp_path / "unreached" / "report.md").read_text()
    assert "CL not reached: final checkpoint" in report
