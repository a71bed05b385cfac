"""Two commands on one output, reruns and leftovers (issue 12 section 5): nothing is replaced without
--overwrite (checked at the final rename), one study per dir (the second names the holder's pid),
a rerun with a changed config is refused naming the fields, every --set applies and is printed,
a killed command's hidden temporaries are cleaned, and outputs follow the user's umask."""
from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hf_optquant.cli import build_parser, main
from hf_optquant.errors import ConfigError
from hf_optquant.io import atomic_dir, atomic_write_json, clean_stale_partials
from hf_optquant.lock import exclusive_lock

STUDY = {"name": "c", "optimizers": ["adamw"], "sizes": ["tiny-1"], "precisions": ["full"], "tokens_per_param": 0.12,
         "vocab_size": 300, "block_size": 32, "batch_size": 8, "eval_every": 8, "max_eval_tokens": 2048,
         "train_overrides": {"use_cpu": True}}


def _study_cfg(tmp_path: Path, **over) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "output_dir": str(tmp_path / "out"), **over}))
    return path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "fix:" in err, err
    return err


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _hidden(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


# --- final rename -----------------------------------------------------------------
@pytest.mark.parametrize("content", [True, False], ids=["full dir", "empty dir"])
def test_output_that_appears_meanwhile_is_never_replaced(content, tmp_path):
    out = tmp_path / "q"
    with pytest.raises(ConfigError, match="appeared while this command ran"):
        with atomic_dir(out) as tmp:
            (tmp / "model.safetensors").write_text("mine")
            out.mkdir()  # the other command finished first
            if content:
                (out / "model.safetensors").write_text("theirs")
    assert [p.name for p in out.iterdir()] == (["model.safetensors"] if content else [])
    if content:
        assert (out / "model.safetensors").read_text() == "theirs"
    assert _hidden(tmp_path) == []


def test_two_ptq_into_one_out_second_refused_at_rename(tokenizer, tmp_path, capsys, monkeypatch):
    from transformers import PreTrainedModel

    from hf_optquant.models import build_model

    model_dir = tmp_path / "m"  # PTQ needs no trained weights to show the race
    build_model("tiny-1", vocab_size=len(tokenizer), seed=0).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "q"
    save = PreTrainedModel.save_pretrained

    def other_command_finishes_first(self, *a, **kw):
        if not out.exists():  # a W8 run into the same --out completes while this W4 one is saving
            out.mkdir()
            (out / "quantization_record.json").write_text('{"w_bits": 8}')
        return save(self, *a, **kw)

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", other_command_finishes_first)
    assert main(["ptq", str(model_dir), "--out", str(out), "--a-bits", "none"]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]  # (progress bars aside)
    assert len(errors) == 1 and "already exists" in errors[0] and "fix:" in errors[0], errors
    assert [p.name for p in out.iterdir()] == ["quantization_record.json"]
    assert '"w_bits": 8' in (out / "quantization_record.json").read_text()
    assert _hidden(tmp_path) == []  # no .partial left


def test_overwrite_killed_between_renames_keeps_the_old_output(tmp_path):
    out = tmp_path / "q"
    old = tmp_path / ".q.old"
    old.mkdir()
    (old / "w").write_text("previous")
    with pytest.raises(ConfigError, match="already exists"):  # put back, so not replaced without --overwrite
        with atomic_dir(out):
            pass
    assert (out / "w").read_text() == "previous" and not old.exists()


# --- leftovers and permissions ------------------------------------------------------
def test_partials_of_dead_processes_are_cleaned(tmp_path):
    from hf_optquant import io as hio

    dead = tmp_path / f".q.h{hio._host()}p{_dead_pid()}.0123abcd.partial"
    live = tmp_path / f".q.h{hio._host()}p{os.getpid()}.0123abcd.partial"
    other_host = tmp_path / f".q.h{'0' * 8 if hio._host() != '0' * 8 else '1' * 8}p{_dead_pid()}.0123abcd.partial"
    dead_file = tmp_path / "sub" / f".run.json.h{hio._host()}p{_dead_pid()}.0123abcd.tmp"
    for d in (dead, live, other_host):
        d.mkdir()
        (d / "half").write_text("x")
    dead_file.parent.mkdir()
    dead_file.write_text("{")
    with atomic_dir(tmp_path / "q") as tmp:
        (tmp / "a").write_text("1")
    assert not dead.exists() and live.exists() and other_host.exists()
    # A study sweeps its whole dir.
    assert clean_stale_partials(tmp_path, recursive=True) == [dead_file]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_follow_the_umask(umask, tmp_path):
    old = os.umask(umask)
    try:
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
        atomic_write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o666 & ~umask


# --- study lock ------------------------------------------------------------------------
def test_second_study_in_one_dir_names_the_holder(tmp_path, capsys):
    cfg = _study_cfg(tmp_path)
    lock = tmp_path / "out" / ".study.lock"
    lock.parent.mkdir()
    # Another study's process, as exclusive_lock holds it: flock + "pid host" (plain, to start fast).
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, socket, time\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, f'{os.getpid()} {socket.gethostname()}'.encode()); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["study", str(cfg)]) == 2
        err = _one_line(capsys)
        assert f"pid {holder.pid}" in err and "in use by another study" in err
        assert not (tmp_path / "out" / "runs").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died: its lock (its pid still in the file) is taken over.
    assert lock.read_text().split()[0] == str(holder.pid)
    with exclusive_lock(lock, what="study"):
        assert lock.read_text().split()[0] == str(os.getpid())


def test_lock_file_of_a_dead_pid_is_taken_over(tmp_path):
    lock = tmp_path / ".study.lock"
    lock.write_text(f"{_dead_pid()} somehost\n")
    with exclusive_lock(lock, what="study"):
        with pytest.raises(ConfigError, match=f"pid {os.getpid()} "):
            with exclusive_lock(lock, what="study"):
                pass


# --- rerun with a changed config, --set, --print-commands ---------------------------------
def _record(cfg_path: Path, **over):
    from hf_optquant.study.config import load_study_config
    from hf_optquant.study.guard import config_record

    rec = config_record(load_study_config(cfg_path, over))
    atomic_write_json(Path(rec["output_dir"]) / "study_config.json", rec)
    return rec


def test_rerun_with_changed_config_is_refused_naming_every_field(tmp_path, capsys):
    cfg = _study_cfg(tmp_path)
    _record(cfg)
    # Both --set values apply (each one is named), none is silently reused.
    assert main(["study", str(cfg), "--set", "eval_every=4", "--set", "batch_size=4"]) == 2
    err = _one_line(capsys)
    assert "batch_size" in err and "eval_every" in err and "eval_every: 8 -> 4" in err
    assert not (tmp_path / "out" / "runs").exists()
    # --run jobs and --collect are held to the same record.
    assert main(["study", str(cfg), "--run", "adamw-tiny-1-full", "--set", "qat.w_bits=3"]) == 2
    assert "qat.w_bits" in _one_line(capsys)
    assert main(["study", str(cfg), "--collect", "--set", "seed=1"]) == 2
    assert "seed" in _one_line(capsys)


def test_fields_added_since_the_record_pass_at_their_default(tmp_path):
    from hf_optquant.study.config import load_study_config
    from hf_optquant.study.guard import changed_fields, check_same_config, config_record

    cfg = load_study_config(_study_cfg(tmp_path))
    rec = config_record(cfg)
    older = {k: v for k, v in rec.items() if k != "launcher"}  # written before the field existed
    check_same_config(cfg, older)
    assert changed_fields({**rec, "qat": {**rec["qat"], "w_bits": 8}}, rec) == {"qat.w_bits": (8, 4)}


def test_print_commands_carry_every_override(tmp_path, capsys):
    from hf_optquant.config import parse_overrides
    from hf_optquant.study.config import load_study_config

    cfg = _study_cfg(tmp_path)
    sets = ["eval_every=4", "learning_rates={adamw: 0.002}", "output_dir=" + str(tmp_path / "o d")]
    assert main(["study", str(cfg), "--print-commands", *[w for s in sets for w in ("--set", s)]]) == 0
    printed = capsys.readouterr().out.splitlines()
    lines = [ln for ln in printed if ln and not ln.startswith("#")]
    assert len(lines) == 1
    assert all(shlex.quote(s) in printed[-1] for s in sets), printed[-1]  # the --collect hint too
    argv = shlex.split(lines[0])[1:]
    args = build_parser(argv).parse_args(argv)
    assert args.run == "adamw-tiny-1-full" and args.set == sets
    got = load_study_config(args.config, parse_overrides(["--" + s for s in args.set]))
    assert got.eval_every == 4 and got.learning_rates == {"adamw": 0.002} and got.output_dir == str(tmp_path / "o d")
    assert STUDY["batch_size"] == got.batch_size  # the YAML's own values are kept


@pytest.mark.slow
def test_kill_during_study_then_rerun_cleans_and_resumes(tmp_path):
    """A killed one-shot study leaves its lock and temporaries; the next run takes over and cleans."""
    from hf_optquant import io as hio

    cfg = _study_cfg(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "hf_optquant.cli", "study", str(cfg)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS="1",
                                     PYTHONPATH=str(Path(__file__).parents[1])))
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "runs").glob("*/checkpoint-*/trainer_state.json")):
        time.sleep(0.2)
    os.killpg(proc.pid, 9)
    proc.wait()
    stale = out / "runs" / f".x.h{hio._host()}p{proc.pid}.0123abcd.partial"
    stale.mkdir(parents=True)
    assert (out / ".study.lock").read_text().split()[0] == str(proc.pid)
    assert main(["study", str(cfg)]) == 0
    assert not stale.exists()
    assert (out / "report.md").exists()
