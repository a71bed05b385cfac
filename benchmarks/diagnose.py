"""ABC diagnosis cost: wall time of the full decomposition relative to one evaluation forward pass over the
same batches, and peak memory growth, per module set. Four forward passes per module (clean, quantized and
the two counterfactuals) is the floor; the goal is at most 5x.

    python benchmarks/diagnose.py [--size tiny-7] [--batches 8] [--batch-size 4] [--seq 128]

Each measurement runs in its own subprocess (``--worker``) so that its peak RSS (``ru_maxrss``) is its own;
"peak +MiB" is that peak minus the RSS after the model and its quantized copy are built; wall times are
the fastest of 3 repetitions in that process. The 4x-batches row
shows whether memory grows with the number of batches (it should not: the pass streams).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time


def worker(mode: str, size: str, batches: int, batch_size: int, seq: int, reps: int = 3) -> dict:
    outliers = "none" if mode.endswith("-abc-only") else "linear" if mode.endswith("-linear-outliers") else "residual"
    mode = mode.removesuffix("-abc-only").removesuffix("-linear-outliers")
    import torch

    from hf_optquant.metrics import diagnose_models
    from hf_optquant.models import build_model
    from hf_optquant.ptq import PTQConfig, quantize_model

    torch.manual_seed(0)
    model = build_model(size, vocab_size=2048).eval()
    qmodel, _ = quantize_model(model, PTQConfig(w_bits=4, a_bits=4))
    ids = torch.randint(0, 2048, (batches * batch_size, seq), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # warm-up: first-call allocations and kernel selection
        model(input_ids=ids[:batch_size])
        qmodel(input_ids=ids[:batch_size])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    walls = []
    for _ in range(reps):  # the fastest of a few: single timings on a shared 2-core machine vary by ~30%
        t = time.perf_counter()
        if mode in ("forward", "eval"):
            with torch.no_grad():
                for i in range(0, ids.shape[0], batch_size):
                    b = ids[i:i + batch_size]
                    model(input_ids=b, labels=b if mode == "eval" else None)
        else:
            diagnose_models(model, qmodel, ids, batch_size=batch_size, modules=mode, progress=False,
                            outliers=outliers)
        walls.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"wall_s": min(walls), "peak_growth_mib": (peak - base) / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", default="tiny-7")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--worker", default=None)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.size, a.batches, a.batch_size, a.seq)))
        return

    def run(mode, batches):
        out = subprocess.run([sys.executable, __file__, "--worker", mode, "--size", a.size, "--batches",
                              str(batches), "--batch-size", str(a.batch_size), "--seq", str(a.seq)],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    import torch

    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; {a.size}, "
          f"{a.batches} batches x {a.batch_size} x {a.seq} tokens, W4A4 RTN")
    # The baseline is an evaluation pass: forward with labels (the loss), as Trainer.evaluate runs it; the
    # ABC pass also computes both models' losses. The bare forward (logits only) is shown beside.
    ev, fwd = run("eval", a.batches), run("forward", a.batches)
    print(f"{'pass':<30}{'wall s':>9}{'x eval':>9}{'x fwd':>9}{'peak +MiB':>11}")

    def line(label, r, e, f):
        print(f"{label:<30}{r['wall_s']:>9.3f}{r['wall_s'] / e['wall_s']:>9.2f}{r['wall_s'] / f['wall_s']:>9.2f}"
              f"{r['peak_growth_mib']:>11.1f}")

    line("eval forward (with loss)", ev, ev, fwd)
    line("forward (logits only)", fwd, ev, fwd)
    for mode in ("block-abc-only", "block", "block-linear-outliers", "linear", "all"):
        line("ABC, modules=" + mode, run(mode, a.batches), ev, fwd)
    ev4, fwd4 = run("eval", 4 * a.batches), run("forward", 4 * a.batches)
    line("4x batches: eval forward", ev4, ev4, fwd4)
    line("4x batches: ABC, block", run("block", 4 * a.batches), ev4, fwd4)


if __name__ == "__main__":
    main()
