"""`study --print-commands` launch lines for several nodes: accelerate's and torchrun's own parsers read
them as multi-node launches once the job script's variables are set."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hf_optquant.cli import main

ENV = {"MASTER_ADDR": "node001", "MASTER_PORT": "29611", "NODE_RANK": "1"}


def _lines(capsys, *sets):
    assert main(["study", "--print-commands", "--set", *sets]) == 0
    out = capsys.readouterr().out.splitlines()
    return [line for line in out if line and not line.startswith("#")], out


def _words(line):
    """The line's words after a real shell expands it on a node where the job script set ENV."""
    echo = f"{shlex.quote(sys.executable)} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "
    out = subprocess.run(["bash", "-c", echo + line], env={**os.environ, **ENV}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_accelerate_multi_node_lines(capsys):
    from accelerate.commands.launch import launch_command_parser

    lines, out = _lines(capsys, "launcher=accelerate", "nodes=2", "procs_per_node=4",
                        "accelerate_config=trainer_configs/accelerate_fsdp2.yaml")
    assert any("NODE_RANK" in line for line in out if line.startswith("#"))
    words = _words(lines[0])
    assert words[:2] == ["accelerate", "launch"]
    args = launch_command_parser().parse_args(words[2:])
    assert (args.num_machines, args.machine_rank, args.num_processes) == (2, 1, 8)
    assert (args.main_process_ip, args.main_process_port) == ("node001", 29611)
    assert args.config_file == "trainer_configs/accelerate_fsdp2.yaml" and args.module
    assert args.training_script == "hf_optquant.cli" and args.training_script_args[:1] == ["study"]
    tail = args.training_script_args
    assert tail[tail.index("--run") + 1]  # the run id, then the study's --set overrides (self-contained line)
    assert not args.multi_gpu  # the FSDP2 config says how to launch


def test_accelerate_without_config_asks_for_several_processes(capsys):
    from accelerate.commands.launch import launch_command_parser

    lines, _ = _lines(capsys, "launcher=accelerate", "nodes=2")
    args = launch_command_parser().parse_args(_words(lines[0])[2:])
    # without --multi_gpu accelerate would start one process per node when a node has one GPU (or none)
    assert args.multi_gpu and (args.num_machines, args.num_processes) == (2, 2)


def test_torchrun_rendezvous_lines(capsys):
    from torch.distributed.run import get_args_parser

    lines, _ = _lines(capsys, "launcher=torchrun", "nodes=3", "procs_per_node=8")
    words = _words(lines[0])
    assert words[0] == "torchrun"
    args = get_args_parser().parse_args(words[1:])
    assert (args.nnodes, args.nproc_per_node, args.rdzv_backend) == ("3", "8", "c10d")
    assert args.rdzv_endpoint == "node001:29611" and args.module and args.training_script == "hf_optquant.cli"
    tail = args.training_script_args
    run_id = tail[tail.index("--run-id") + 1]
    assert args.rdzv_id == run_id  # one rendezvous per run: array tasks on shared nodes never mix


@pytest.mark.parametrize("sets,field", [
    (["nodes=2"], "launcher"),                       # python starts one process
    (["launcher=torchrun", "nodes=0"], "nodes"),
    (["launcher=torchrun", "accelerate_config=x.yaml"], "accelerate_config"),
    (["launcher=srun"], "launcher"),
])
def test_bad_launch_settings_are_one_line(capsys, sets, field):
    assert main(["study", "--print-commands", "--set", *sets]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0], err


@pytest.mark.slow
@pytest.mark.parametrize("launcher,port", [("torchrun", 29657), ("accelerate", 29659)])
def test_two_node_line_trains_one_run_on_localhost(tmp_path, capsys, launcher, port):
    """The printed line run twice on one machine as two 'nodes' (NODE_RANK 0 and 1): one run, world size 2."""
    import yaml

    cfg = tmp_path / "micro.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "micro", "output_dir": str(tmp_path / "study"), "optimizers": ["muon"], "sizes": ["tiny-1"],
        "tokens_per_param": 0.12, "vocab_size": 300, "block_size": 32, "batch_size": 8, "eval_every": 8,
        "max_eval_tokens": 2048, "precisions": ["full"], "diagnose_batches": 1,
        "train_overrides": {"use_cpu": True}, "launcher": launcher, "nodes": 2, "procs_per_node": 1}))
    assert main(["study", str(cfg), "--print-commands"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x and not x.startswith("#")][0]
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(Path(__file__).parents[1])}
    procs = [subprocess.Popen(["bash", "-c", line], env={**base, "NODE_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-2000:] + outs[1][-2000:]
    rec = json.loads((tmp_path / "study" / "runs" / "muon-tiny-1-full" / "run.json").read_text())
    # Both nodes trained one run together: tokens count both processes' batches.
    assert rec["tokens_seen"] == rec["global_step"] * 8 * 32 * 2
