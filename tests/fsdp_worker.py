"""Run under torchrun (gloo, CPU): each optimizer under FSDP2 (fully_shard) against one unsharded process.

argv: OUT_DIR OPTS [--resume OPTS]. Env HFOQ_FSDP_BACKEND=nccl runs on one GPU per rank (the CUDA path:
benchmarks/fsdp_cuda_check.sh), HFOQ_FSDP_BF16=1 adds FSDP2's bf16 compute (fp32 shards and optimizer) and
bf16 autocast in the reference. Every rank also trains the unsharded reference on the whole global batch
(no collectives, so both ranks do it side by side); rank 0 writes ``result.json``:
{opt: {"ref_losses", "fsdp_losses", "ref_final", "fsdp_final", "max_param_diff", "state_bytes": [per rank]}}
and, for ``--resume`` optimizers, "resume_max_diff": max |weights after 2 + save/load + 2 steps - 4 steps|;
"gather": how GatheredOptimizer moves uneven row shards to their owner and back (see ``gather_check``).
"""
import contextlib
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from hf_optquant.models import build_model
from hf_optquant.optim import build_optimizer
from hf_optquant.optim.distributed import GatheredOptimizer, state_bytes
from hf_optquant.trainer.parallel import load_optimizer_shard, save_optimizer_shard

STEPS, VOCAB, SEQ, GLOBAL_BATCH = 4, 256, 32, 8
# Preconditioners from the first steps, so that 4 steps exercise the matrix computations.
OVERRIDES = {"shampoo": {"start_preconditioning_step": 1, "precondition_frequency": 2},
             # With ant's routing SOAP would also take the tied embedding, whose 256 x 256 factor has rank <= 8 x 32
             # tokens: its eigenbasis on the null space follows rounding, so the gradient-reduction order of FSDP
             # vs one process moves the loss by ~5e-3; the matrix path is compared with the AdamW side group.
             "soap": {"precondition_frequency": 2, "side_optimizer": "adamw"}}


BACKEND = os.environ.get("HFOQ_FSDP_BACKEND", "gloo")
BF16 = os.environ.get("HFOQ_FSDP_BF16") == "1"
DEVICE = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if BACKEND == "nccl" else torch.device("cpu")


def model(seed=0):
    return build_model("tiny-2", vocab_size=VOCAB, seed=seed).to(device=DEVICE, dtype=torch.float32)


def shard(m):
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if BF16 else \
        MixedPrecisionPolicy()
    for layer in m.model.layers:
        fully_shard(layer, mp_policy=mp)
    fully_shard(m, mp_policy=mp)
    return m


def loss_of(m, x, sharded=True):
    # The reference computes in bf16 the way FSDP2 does: bf16 weights and activations, fp32 master weights.
    ctx = torch.autocast(DEVICE.type, dtype=torch.bfloat16) if BF16 and not sharded else contextlib.nullcontext()
    with ctx:
        return m(input_ids=x, labels=x).loss.float()


def train(m, opt, batch, steps, record):
    for _ in range(steps):
        loss = loss_of(m, batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
        record.append(global_mean(loss.detach()))


def global_mean(t):
    if dist.is_initialized():
        t = t.clone()
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return float(t)


@torch.no_grad()
def full_params(m):
    out = {}
    for n, p in m.named_parameters():
        out[n] = p.full_tensor() if hasattr(p, "full_tensor") else p.detach()
    return out


def gather_check():
    """Matrices whose rows do not split evenly (3 rows on 2 ranks: 2 + 1; 1 row: 1 + an empty shard) reach
    their owner whole and bit-exact, go through the row-shard path (not the full_tensor fallback), and an
    SGD step through the wrapper gives each rank its shard of the one-process update."""
    torch.manual_seed(5)
    ref = torch.nn.Sequential(torch.nn.Linear(5, 3, bias=False), torch.nn.Linear(3, 1, bias=False),
                              torch.nn.Linear(1, 7, bias=False)).to(DEVICE)
    m = torch.nn.Sequential(*[torch.nn.Linear(lin.in_features, lin.out_features, bias=False) for lin in ref]).to(DEVICE)
    m.load_state_dict(ref.state_dict())
    fully_shard(m)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(6)).to(DEVICE)
    for net in (ref, m):
        net(x).square().sum().backward()
    opt = GatheredOptimizer(torch.optim.SGD(m.parameters(), lr=0.1))
    opt._setup()
    exact, row_path = True, 0
    for p in m.parameters():
        row_path += opt._row_shards(p) is not None
        for t in (p, p.grad):
            whole, full = opt._to_owner(p, t), t.full_tensor()
            if whole is not None:
                exact &= bool(torch.equal(whole, full))
    opt.step()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    diff = max(float((p.full_tensor() - q).abs().max()) for p, q in zip(m.parameters(), ref.parameters()))
    flags = [None] * dist.get_world_size()
    dist.all_gather_object(flags, exact)
    return {"exact": all(flags), "row_path": row_path, "n_params": len(list(m.parameters())), "step_diff": diff}


def main():
    out = Path(sys.argv[1])
    opts = [o for o in sys.argv[2].split(",") if o]
    resume = sys.argv[4].split(",") if len(sys.argv) > 4 and sys.argv[3] == "--resume" else []
    torch.set_num_threads(1)
    if DEVICE.type == "cuda":
        torch.cuda.set_device(DEVICE)
    dist.init_process_group(BACKEND)
    rank, world = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(1)
    data = torch.randint(0, VOCAB, (GLOBAL_BATCH, SEQ), generator=g).to(DEVICE)
    local = data.chunk(world)[rank]
    result = {}
    for name in opts:
        kw = OVERRIDES.get(name, {})
        torch.manual_seed(0)
        ref = model()
        ref_opt = build_optimizer(name, ref, **kw)
        ref_losses = []
        for _ in range(STEPS):
            loss = loss_of(ref, data, sharded=False)
            loss.backward()
            ref_opt.step()
            ref_opt.zero_grad()
            ref_losses.append(float(loss.detach()))
        with torch.no_grad():
            ref_final = float(loss_of(ref, data, sharded=False))
        torch.manual_seed(0)
        m = shard(model())
        opt = build_optimizer(name, m, **kw)
        losses = []
        train(m, opt, local, STEPS, losses)
        with torch.no_grad():
            final = global_mean(loss_of(m, local).detach())
        full = full_params(m)
        diff = max(float((full[n] - p.detach()).abs().max()) for n, p in ref.named_parameters())
        sizes = [None] * world
        dist.all_gather_object(sizes, state_bytes(opt))
        entry = {"ref_losses": ref_losses, "fsdp_losses": losses, "ref_final": ref_final, "fsdp_final": final,
                 "max_param_diff": diff, "state_bytes": sizes, "ref_state_bytes": state_bytes(ref_opt)}
        if name in resume:
            entry["resume_max_diff"] = resume_check(name, kw, local, full, out / f"ckpt-{name}")
        result[name] = entry
    result["gather"] = gather_check()
    if rank == 0:
        (out / "result.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def resume_check(name, kw, local, uninterrupted, ckpt: Path) -> float:
    """2 steps, save (sharded model via DCP, this rank's optimizer shard), fresh model, load, 2 more steps."""
    torch.manual_seed(0)
    m = shard(model())
    opt = build_optimizer(name, m, **kw)
    train(m, opt, local, 2, [])
    dcp.save({"model": get_model_state_dict(m)}, checkpoint_id=str(ckpt / "model"))
    rank, world = dist.get_rank(), dist.get_world_size()
    save_optimizer_shard(opt, ckpt, rank, world)  # what OptQuantTrainer writes under FSDP2
    rng = torch.get_rng_state()  # PSGD draws random probes (the Trainer saves this per rank too)
    dist.barrier()
    torch.manual_seed(123)  # different init: everything must come from the checkpoint
    m2 = shard(model(seed=7))
    opt2 = build_optimizer(name, m2, **kw)
    sd = {"model": get_model_state_dict(m2)}
    dcp.load(sd, checkpoint_id=str(ckpt / "model"))
    set_model_state_dict(m2, sd["model"])
    load_optimizer_shard(opt2, ckpt, rank, world)
    torch.set_rng_state(rng)
    train(m2, opt2, local, STEPS - 2, [])
    full = full_params(m2)
    return max(float((full[n] - uninterrupted[n]).abs().max()) for n in uninterrupted)


if __name__ == "__main__":
    main()
