"""Optimizer state per rank under FSDP2 (fully_shard), at 1 and 2 ranks, for the six optimizers;
plus the step time and the final-loss difference to one unsharded process on the same global batch.

    python benchmarks/distributed.py [--size tiny-5] [--vocab 2048] [--batch 8] [--seq 64] [--steps 6]
                                     [--ranks 1 2] [--backend gloo]

Each rank count runs under ``torchrun`` (gloo on CPU; ``--backend nccl`` on GPUs). State bytes count every
tensor in this rank's optimizer state (a DTensor counts its local shard). With the matrix methods each
parameter's state lives on its owner rank (optim/distributed.py), so per-rank bytes follow how evenly the
owners split the matrices; AdamW's state is sharded element-wise with the parameters.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAMES = ("adamw", "muon", "psgd", "scion", "shampoo", "soap")
# Preconditioners within the measured steps (the presets start Shampoo at step 20).
OVERRIDES = {"shampoo": {"start_preconditioning_step": 1, "precondition_frequency": 2},
             "soap": {"precondition_frequency": 2}}


def worker(args) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from hf_optquant.models import build_model
    from hf_optquant.optim import build_optimizer
    from hf_optquant.optim.distributed import state_bytes

    torch.set_num_threads(1)
    cuda = args.backend == "nccl"
    dist.init_process_group(args.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    data = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    local = data.chunk(world)[rank].to(device)
    out = {}
    for name in NAMES:
        model = build_model(args.size, vocab_size=args.vocab, seed=0).to(device)
        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        opt = build_optimizer(name, model, **OVERRIDES.get(name, {}))
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            model(input_ids=local, labels=local).loss.backward()
            opt.step()
            opt.zero_grad()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        with torch.no_grad():
            loss = model(input_ids=local, labels=local).loss.detach().clone()
        dist.all_reduce(loss)
        per_rank = [None] * world
        dist.all_gather_object(per_rank, state_bytes(opt))
        n_params = sum(p.numel() for p in model.parameters())
        out[name] = {"state_bytes": per_rank, "n_params": n_params, "final_loss": float(loss) / world,
                     "step_s": sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]}
    if rank == 0:
        Path(args.out).write_text(json.dumps(out))
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="tiny-5")
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    res = {}
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.ranks:
            out = Path(tmp) / f"r{n}.json"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_port",
                   str(29640 + n), __file__, "--worker", "--out", str(out), "--size", args.size, "--vocab",
                   str(args.vocab), "--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps),
                   "--backend", args.backend]
            t0 = time.time()
            subprocess.run(cmd, env=env, check=True)
            print(f"{n} rank(s): {time.time() - t0:.0f} s", file=sys.stderr)
            res[n] = json.loads(out.read_text())
    base = min(res)
    cols = " | ".join(f"{n} rank(s): bytes/rank (max)" for n in res)
    print(f"| optimizer | params | {cols} | max/rank vs {base} rank | median step s ({', '.join(map(str, res))}) "
          f"| final loss diff vs {base} rank |")
    print("|---" * (5 + len(res)) + "|")
    for name in NAMES:
        cells = []
        for n in res:
            b = res[n][name]["state_bytes"]
            cells.append(f"{'/'.join(f'{x / 1e6:.3f}' for x in b)} MB ({max(b) / 1e6:.3f})")
        last = max(res)
        ratio = max(res[last][name]["state_bytes"]) / max(res[base][name]["state_bytes"])
        steps = ", ".join(f"{res[n][name]['step_s']:.3f}" for n in res)
        dloss = max(abs(res[n][name]["final_loss"] - res[base][name]["final_loss"]) for n in res)
        print(f"| {name} | {res[base][name]['n_params']} | {' | '.join(cells)} | {ratio:.2f} | {steps} | {dloss:.1e} |")


if __name__ == "__main__":
    main()
