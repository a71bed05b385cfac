"""`study --print-commands` launch lines for several nodes: accelerate's and torchrun's own parsers read
them as multi-node launches once the job script's variables are set."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

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
    assert args.training_script_args[-2] == "--run"


def test_torchrun_rendezvous_lines(capsys):
    from torch.distributed.run import get_args_parser

    lines, _ = _lines(capsys, "launcher=torchrun", "nodes=3", "procs_per_node=8")
    words = _words(lines[0])
    assert words[0] == "torchrun"
    args = get_args_parser().parse_args(words[1:])
    assert (args.nnodes, args.nproc_per_node, args.rdzv_backend) == ("3", "8", "c10d")
    assert args.rdzv_endpoint == "node001:29611" and args.module and args.training_script == "hf_optquant.cli"
    assert args.training_script_args[-2] == "--run-id"
    run_id = args.training_script_args[-1]
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
