"""Launch lines for ``study --print-commands``: one process, or several processes on one or more nodes.

Multi-node lines leave the per-node values to the job script as shell variables, so one printed line runs
unchanged on every node of an allocation (docs/distributed.md shows a SLURM array script that sets them):
``MASTER_ADDR`` (first node's host), ``MASTER_PORT`` (default 29500) and, for accelerate, ``NODE_RANK``.
torchrun needs no node rank: its c10d rendezvous numbers the nodes itself.
"""
from __future__ import annotations

import shlex

__all__ = ["LAUNCHERS", "launch_prefix"]

LAUNCHERS = ("python", "accelerate", "torchrun")

_PORT = '"${MASTER_PORT:-29500}"'


def launch_prefix(launcher: str, *, nodes: int = 1, procs_per_node: int = 1, accelerate_config: str | None = None,
                  run_id: str = "run") -> list[str]:
    """The words before ``study CONFIG --run ID`` (already shell-quoted; ``$VARS`` left for the job script)."""
    q = shlex.quote
    if launcher == "python":
        return ["hf-optquant"]
    if launcher == "torchrun":
        words = ["torchrun", "--nproc_per_node", str(procs_per_node)]
        if nodes > 1:
            words += ["--nnodes", str(nodes), "--rdzv_backend", "c10d", "--rdzv_id", q(run_id),
                      "--rdzv_endpoint", '"$MASTER_ADDR:${MASTER_PORT:-29500}"']
        return words + ["-m", "hf_optquant.cli"]
    words = ["accelerate", "launch"]
    if accelerate_config:
        words += ["--config_file", q(accelerate_config)]
    if nodes > 1 or procs_per_node > 1:
        if not accelerate_config:
            # Without a config accelerate starts ONE process per node unless it sees several GPUs there.
            words += ["--multi_gpu"]
        # accelerate's --num_processes counts every process of every node.
        words += ["--num_processes", str(nodes * procs_per_node)]
    if nodes > 1:
        words += ["--num_machines", str(nodes), "--machine_rank", '"$NODE_RANK"', "--main_process_ip",
                  '"$MASTER_ADDR"', "--main_process_port", _PORT]
    return words + ["-m", "hf_optquant.cli"]
