"""Optimizer cost: training-step time relative to AdamW, optimizer-state memory per parameter,
and the overhead of hf_optquant's combined wiring against calling the library optimizers directly.

    python benchmarks/optimizers.py [--size tiny-7] [--hidden 256] [--layers 6] [--vocab 4096]
                                    [--batch 8] [--seq 128] [--warmup 25] [--steps 40] [--device cpu]
    # the 125M preset's matrix shapes (768, MLP 2048) with 2 layers, as issue 18 measures on CPU:
    python benchmarks/optimizers.py --size 125M --hidden 0 --layers 2 --vocab 4096 --overhead-reps 0

Every figure is measured side by side in this one run: the six optimizers (each on its own copy of
the same initial model, fed the same batch) take their steps round-robin, so a busy machine slows
them alike. Warm-up is longer than Shampoo's 20 grafted-only steps, and ``--steps`` is a multiple
of Shampoo's (20) and SOAP's (10) preconditioner periods, so the mean includes their periodic
eigen/root computations; the median shows the typical step. Paper reference (GPU, 760M):
AdamW 6.28 s/step, Shampoo 8.38 s/step (+33%).
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

NAMES = ("adamw", "muon", "psgd", "scion", "shampoo", "soap")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _tensors(obj, seen: dict[int, int]) -> None:
    """Collect every tensor reachable from optimizer state, including library objects'
    attributes (Shampoo keeps its statistics in PreConditioner / Graft objects)."""
    if isinstance(obj, torch.Tensor):
        seen.setdefault(obj.untyped_storage().data_ptr(), obj.untyped_storage().nbytes())
    elif isinstance(obj, dict):
        for v in obj.values():
            _tensors(v, seen)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _tensors(v, seen)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("pytorch_optimizer"):
        _tensors(vars(obj), seen)


def state_bytes(opt: torch.optim.Optimizer) -> int:
    seen: dict[int, int] = {}
    _tensors(list(opt.state.values()), seen)
    return sum(seen.values())


def _model(args, device):
    from hf_optquant.models import build_model

    over = {}
    if args.hidden:
        over.update(hidden_size=args.hidden, intermediate_size=-(-(8 * args.hidden // 3) // 64) * 64,
                    num_attention_heads=args.hidden // 32, num_key_value_heads=args.hidden // 32)
    if args.layers:
        over["num_hidden_layers"] = args.layers
    return build_model(args.size, vocab_size=args.vocab, seed=0, **over).to(device)


def step_times(args) -> dict:
    """Full training step (forward, backward, optimizer step) and optimizer step alone, per optimizer."""
    from hf_optquant.optim import build_optimizer

    device = args.device
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g).to(device)
    runs = {}
    for name in NAMES:
        m = _model(args, device)
        runs[name] = (m, build_optimizer(name, m))
    n_params = sum(p.numel() for p in {id(p): p for p in runs["adamw"][0].parameters()}.values())
    full = {n: [] for n in NAMES}
    opt_only = {n: [] for n in NAMES}
    for i in range(args.warmup + args.steps):
        for name in NAMES:  # round-robin: every optimizer sees the same machine load
            m, opt = runs[name]
            _sync(device)
            t0 = time.perf_counter()
            m(input_ids=batch, labels=batch).loss.backward()
            _sync(device)
            t1 = time.perf_counter()
            opt.step()
            _sync(device)
            t2 = time.perf_counter()
            opt.zero_grad()
            if i >= args.warmup:
                full[name].append(t2 - t0)
                opt_only[name].append(t2 - t1)
    out = {"n_params": n_params}
    for name in NAMES:
        out[name] = {
            "full_median": statistics.median(full[name]),
            "full_mean": statistics.fmean(full[name]),
            "opt_median": statistics.median(opt_only[name]),
            "opt_mean": statistics.fmean(opt_only[name]),
            "state_bytes_per_param": state_bytes(runs[name][1]) / n_params,
        }
    return out


def wiring_overhead(args, name: str, reps: int) -> tuple[float, float]:
    """(combined, direct) median optimizer-step seconds. Both step the *same* library optimizer
    objects on the same parameters and gradients, interleaved: ``combined.step()`` against calling
    each sub-optimizer's ``step()`` by hand. Timing two separately built models instead showed
    +-5% differences that no wiring can cause (memory placement), so they share one model here."""
    from hf_optquant.optim import build_optimizer

    device = args.device
    batch = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)).to(device)
    model = _model(args, device)
    combined = build_optimizer(name, model)
    model(input_ids=batch, labels=batch).loss.backward()

    @torch.no_grad()
    def step_direct():
        for o in combined.optimizers.values():
            o.step()

    times = {"combined": [], "direct": []}
    # Random (seeded) order: with strict alternation, periodic work (Shampoo's root every 20 steps)
    # would always land on the same side.
    rng = random.Random(0)
    for i in range(args.warmup + reps):
        order = [("combined", combined.step), ("direct", step_direct)]
        rng.shuffle(order)
        for key, fn in order:
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            if i >= args.warmup:
                times[key].append(time.perf_counter() - t)
    return statistics.median(times["combined"]), statistics.median(times["direct"])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="tiny-7", help="model preset (the base of --hidden/--layers)")
    p.add_argument("--hidden", type=int, default=256, help="override the preset's hidden size (0: keep)")
    p.add_argument("--layers", type=int, default=6, help="override the preset's layer count (0: keep)")
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--warmup", type=int, default=25)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--overhead-reps", type=int, default=60, help="0: skip the wiring-overhead table")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="default: cuda when a GPU is present, else cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    res = step_times(args)
    a = res["adamw"]
    print(f"model: {args.size} hidden={args.hidden or 'preset'} layers={args.layers or 'preset'} "
          f"vocab={args.vocab}, {res['n_params'] / 1e6:.2f}M parameters; batch {args.batch} x {args.seq} tokens; "
          f"{args.steps} timed steps after {args.warmup} warm-up, {args.device}, {args.threads} threads")
    print("| optimizer | step median (x AdamW) | step mean (x AdamW) | opt.step median (x AdamW) "
          "| opt.step mean | state bytes / param |")
    print("|---|---|---|---|---|---|")
    for name in NAMES:
        r = res[name]
        print(f"| {name} | {r['full_median'] * 1e3:.1f} ms ({r['full_median'] / a['full_median']:.2f}x) "
              f"| {r['full_mean'] * 1e3:.1f} ms ({r['full_mean'] / a['full_mean']:.2f}x) "
              f"| {r['opt_median'] * 1e3:.2f} ms ({r['opt_median'] / a['opt_median']:.2f}x) "
              f"| {r['opt_mean'] * 1e3:.2f} ms | {r['state_bytes_per_param']:.1f} |")
    if args.overhead_reps <= 0:
        return
    print()
    print("| optimizer | combined opt.step | direct library step(s) | overhead |")
    print("|---|---|---|---|")
    for name in NAMES:
        c, d = wiring_overhead(args, name, args.overhead_reps)
        print(f"| {name} | {c * 1e3:.3f} ms | {d * 1e3:.3f} ms | {100 * (c / d - 1):+.1f}% |")


if __name__ == "__main__":
    main()
