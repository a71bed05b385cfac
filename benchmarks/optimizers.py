"""Optimizer cost: training-step time relative to AdamW, optimizer-state memory per parameter,
and the overhead of hf_optquant's combined wiring against calling the library optimizers directly.

    python benchmarks/optimizers.py [--size tiny-7] [--hidden 256] [--layers 6] [--vocab 4096]
                                    [--batch 8] [--seq 128] [--warmup 25] [--steps 40] [--device cpu]
    # the 125M preset's TRUE shapes (hidden 768, MLP 2048, the paper's 32,000-token vocabulary), one and two
    # layers on CPU, extrapolated to the preset's 12 layers, with the authors' preconditioner cadences
    # (issue 18 section 2; see benchmarks/RESULTS.md):
    python benchmarks/optimizers.py --size 125M --hidden 0 --layers 1,2 --vocab 32000 --batch 2 --seq 128 \
        --warmup 2 --steps 10 --paper-cadence --overhead-reps 0

Every figure is measured side by side in this one run: the optimizers (each on its own copy of the same
initial model, fed the same batch) take their steps round-robin, so a busy machine slows them alike.
Per optimizer: forward+backward of one microbatch, the optimizer step alone (median, and mean over the
timed steps), their sum (the train step at this microbatch), and a PROJECTION of the train step at the
paper's tokens per step (``--tokens-per-step``, 512 x 1024): n_microbatches x the measured forward+backward
+ the optimizer's mean step; state bytes per parameter. With two or more ``--layers`` every time and byte
count is fitted linearly in the layer count and extrapolated to ``--project-layers`` (the preset's depth).

Preconditioner cadences. Default: the optimizers run as built, so ``--warmup`` must pass Shampoo's 20
grafted-only steps and ``--steps`` should be a multiple of Shampoo's (20) and SOAP's (10) periods for the
mean to include their periodic eigen/root computations. ``--paper-cadence`` (for shapes where that is
too slow on CPU: a 12288 x 12288 eigendecomposition takes ~15 minutes on 2 cores):
- Shampoo's timed steps are preconditioned steps between roots (its step counters are set to the
  preconditioning start before each step), and the inverse roots, due every ``precondition_frequency`` steps,
  are timed apart with ``matrix_inverse_roots`` on stacks of the factors' sizes (sizes above ``--eigh-max-n``
  extrapolated from the two largest measured by a fitted power law) and added as roots / frequency.
- PSGD updates its preconditioner with a probability (1.0 for 500 steps, then decaying to 0.03): an extra
  "psgd (no update)" copy runs at the floor probability (no update in the timed steps), and PSGD's mean step
  over the paper's run (20 tokens per parameter at ``--tokens-per-step``) is p x (step with update) + (1 - p)
  x (step without), p the fraction of steps that update under the library's schedule and counter.
- SOAP's eigenbasis (power iteration + QR every 10 steps) runs as built: ``--steps`` 10 includes one.
Paper reference (GPU, 760M): AdamW 6.28 s/step, Shampoo 8.38 s/step (+33%).
"""
from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import time

import torch

NAMES = ("adamw", "muon", "psgd", "scion", "shampoo", "soap")
PSGD_FLOOR = "psgd (no update)"  # --paper-cadence: PSGD at its floor probability, timed between updates


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


def _model(args, device, layers: int):
    from hf_optquant.models import build_model

    over = {}
    if args.hidden:
        over.update(hidden_size=args.hidden, intermediate_size=-(-(8 * args.hidden // 3) // 64) * 64,
                    num_attention_heads=args.hidden // 32, num_key_value_heads=args.hidden // 32)
    if layers:
        over["num_hidden_layers"] = layers
    return build_model(args.size, vocab_size=args.vocab, seed=0, **over).to(device)


def _build(name: str, model):
    from hf_optquant.optim import build_optimizer

    if name == PSGD_FLOOR:  # probability 1 at step 0, then the floor (0.03): next update 34 steps later
        return build_optimizer("psgd", model, update_prob_flat_steps=0, update_prob_decay=1e6)
    return build_optimizer(name, model)


def _shampoo(opt):
    from hf_optquant.optim.shampoo import Shampoo

    subs = [getattr(o, "inner", o) for o in opt.optimizers.values()]  # GatheredOptimizer wraps the matrix methods
    return next((o for o in subs if isinstance(o, Shampoo)), None)


def _hold_before_roots(sh) -> None:
    """Set Shampoo's step counters to the preconditioning start: the next step preconditions (with the
    current inverse factors) and no root is due. The cost of a preconditioned step does not depend on the
    factors' values; the roots are timed apart (``root_seconds``)."""
    for group in sh.param_groups:
        for p in group["params"]:
            if sh.state.get(p):
                sh.state[p]["step"].fill_(group["start_preconditioning_step"])


def _time_inverse_roots(n: int, count: int, root: float, eps: float, device: str) -> float:
    from hf_optquant.optim.shampoo import matrix_inverse_roots

    g = torch.randn(count, n, 2 * n, generator=torch.Generator().manual_seed(n)).to(device)
    a = g @ g.transpose(-1, -2) / (2 * n)
    _sync(device)
    t = time.perf_counter()
    matrix_inverse_roots(a, root, eps)
    _sync(device)
    return time.perf_counter() - t


def root_seconds(sh, device: str, max_n: int) -> tuple[float, list[str]]:
    """Seconds of one round of Shampoo's inverse roots (all factors, stacked by size as the optimizer
    stacks them), and notes on which sizes were extrapolated. Sizes <= ``max_n`` are timed; larger ones
    scale from the two largest timed sizes <= ``max_n`` by the fitted power law (time ~ n^k)."""
    stacks: dict[tuple[int, float, float], int] = {}
    for group in sh.param_groups:
        for p in group["params"]:
            st = sh.state.get(p) or {}
            names = [k for k in st if k.startswith("factor.")]
            orders: dict[str, int] = {}
            for k in names:
                orders[k.split(".")[1]] = orders.get(k.split(".")[1], 0) + 1
            for k in names:
                key = (st[k].shape[0], 2.0 * orders[k.split(".")[1]], group["epsilon"])
                stacks[key] = stacks.get(key, 0) + 1
    total, notes, cache = 0.0, [], {}

    def timed(n, root, eps):
        if (n, root) not in cache:
            _time_inverse_roots(min(n, 64), 1, root, eps, device)  # warm the solver
            cache[n, root] = min(_time_inverse_roots(n, 1, root, eps, device) for _ in range(1 if n > 1024 else 3))
        return cache[n, root]

    for (n, root, eps), count in sorted(stacks.items()):
        if n <= max_n:
            total += _time_inverse_roots(n, count, root, eps, device) if count > 1 else timed(n, root, eps)
            continue
        lo, hi = max_n // 2, max_n
        t_lo, t_hi = timed(lo, root, eps), timed(hi, root, eps)
        # Below ~0.05 s the timings are noise: assume the dense solver's n^3 there.
        k = math.log(t_hi / t_lo) / math.log(hi / lo) if t_lo > 0.05 else 3.0
        est = count * t_hi * (n / hi) ** k
        total += est
        notes.append(f"{count} x {n}^2: {est:.0f} s extrapolated (n^{k:.2f} from {lo}: {t_lo:.2f} s, "
                     f"{hi}: {t_hi:.2f} s)")
    return total, notes


def psgd_update_fraction(total_steps: int) -> float:
    """Fraction of ``total_steps`` in which Kron (the preset's schedule; the library's counter rule) updates
    its preconditioner."""
    from pytorch_optimizer.optimizer.psgd import precondition_update_prob_schedule

    from hf_optquant.optim.presets import PSGDPreset

    p = PSGDPreset()
    sched = precondition_update_prob_schedule(max_prob=1.0, min_prob=p.update_prob_min, decay=p.update_prob_decay,
                                              flat_start=p.update_prob_flat_steps)
    n = torch.arange(total_steps, dtype=torch.float32)
    probs = (torch.exp(-p.update_prob_decay * (n - p.update_prob_flat_steps))).clamp(p.update_prob_min, 1.0)
    if not torch.allclose(probs[:600:50], torch.stack([sched(i) for i in range(0, 600, 50)])[:len(probs[:600:50])]):
        raise RuntimeError("pytorch_optimizer's PSGD schedule changed: update psgd_update_fraction")
    counter, updates = 0, 0
    for prob in probs.tolist():  # Kron.step: update when the counter reaches 1 / probability
        counter += 1
        if counter >= 1 / prob:
            updates, counter = updates + 1, 0
    return updates / total_steps


def step_times(args, layers: int, names: list[str]) -> dict:
    """Forward+backward, optimizer step, and state bytes per optimizer at ``layers`` layers."""
    device = args.device
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g).to(device)
    runs = {}
    for name in names:
        m = _model(args, device, layers)
        runs[name] = (m, _build(name, m))
    n_params = sum(p.numel() for p in {id(p): p for p in runs[names[0]][0].parameters()}.values())
    fb = {n: [] for n in names}
    opt_only = {n: [] for n in names}
    for i in range(args.warmup + args.steps):
        for name in names:  # round-robin: every optimizer sees the same machine load
            m, opt = runs[name]
            sh = _shampoo(opt) if args.paper_cadence and i >= args.warmup else None
            if sh is not None:
                _hold_before_roots(sh)
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
                fb[name].append(t1 - t0)
                opt_only[name].append(t2 - t1)
    out = {"n_params": n_params, "fwd_bwd": statistics.median([t for n in names for t in fb[n]]), "notes": []}
    for name in names:
        r = {"fwd_bwd_median": statistics.median(fb[name]), "opt_median": statistics.median(opt_only[name]),
             "opt_mean": statistics.fmean(opt_only[name]), "state_bytes": state_bytes(runs[name][1])}
        sh = _shampoo(runs[name][1]) if args.paper_cadence else None
        if sh is not None:
            secs, notes = root_seconds(sh, device, args.eigh_max_n)
            freq = sh.param_groups[0]["precondition_frequency"]
            r["roots_s"] = secs
            r["opt_mean"] += secs / freq
            out["notes"] += [f"shampoo inverse roots every {freq} steps: {secs:.1f} s per round"] + notes
        r["full_median"] = r["fwd_bwd_median"] + r["opt_median"]
        out[name] = r
    return out


def _fit(xs: list[int], ys: list[float], x: int) -> float:
    """Least-squares line through (xs, ys), evaluated at x."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((a - mx) * (c - my) for a, c in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)
    return my + b * (x - mx)


def extrapolate(results: dict[int, dict], names: list[str], layers: int) -> dict:
    """Every time and byte count fitted linearly in the layer count, at ``layers``."""
    xs = sorted(results)
    f = lambda get: _fit(xs, [get(results[x]) for x in xs], layers)  # noqa: E731
    out = {"n_params": round(f(lambda r: r["n_params"])), "fwd_bwd": f(lambda r: r["fwd_bwd"]), "notes": []}
    for name in names:
        out[name] = {k: f(lambda r, k=k: r[name][k])
                     for k in ("fwd_bwd_median", "opt_median", "opt_mean", "state_bytes", "full_median")}
    return out


def finish(res: dict, names: list[str], args) -> None:
    """PSGD's run-average step (--paper-cadence) and the projection to the paper's tokens per step."""
    n_micro = args.tokens_per_step / (args.batch * args.seq)
    res["n_micro"] = n_micro
    if PSGD_FLOOR in names and "psgd" in names:
        p = res["psgd_update_fraction"]
        res["psgd"]["opt_mean_run"] = p * res["psgd"]["opt_mean"] + (1 - p) * res[PSGD_FLOOR]["opt_mean"]
    for name in names:
        r = res[name]
        r["projected"] = n_micro * res["fwd_bwd"] + r.get("opt_mean_run", r["opt_mean"])


def print_table(res: dict, names: list[str], title: str) -> None:
    a = res["adamw"] if "adamw" in res else None
    x = (lambda v, ref: f" ({v / ref:.2f}x)" if ref else "")  # noqa: E731
    print(title)
    print(f"{res['n_params'] / 1e6:.2f}M parameters; forward+backward per microbatch (all copies) "
          f"{res['fwd_bwd'] * 1e3:.0f} ms; projection: {res['n_micro']:.0f} microbatches per step")
    print("| optimizer | fwd+bwd median | opt.step median (x AdamW) | opt.step mean (x AdamW) "
          "| train step at this microbatch, median (x AdamW) | projected train step at the paper's tokens/step "
          "(x AdamW) | state bytes / param |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        r = res[name]
        mean = r.get("opt_mean_run", r["opt_mean"])
        run_note = " (run average)" if "opt_mean_run" in r else ""
        print(f"| {name} | {r['fwd_bwd_median'] * 1e3:.0f} ms "
              f"| {r['opt_median'] * 1e3:.1f} ms{x(r['opt_median'], a and a['opt_median'])} "
              f"| {mean * 1e3:.1f} ms{x(mean, a and a['opt_mean'])}{run_note} "
              f"| {r['full_median'] * 1e3:.0f} ms{x(r['full_median'], a and a['full_median'])} "
              f"| {r['projected']:.1f} s{x(r['projected'], a and a['projected'])} "
              f"| {r['state_bytes'] / res['n_params']:.1f} |")
    for note in res["notes"]:
        print(f"- {note}")
    print()


def profile_step(args, name: str, layers: int, rows: int = 15) -> None:
    """torch.profiler table of one optimizer step of ``name`` (after ``--warmup`` steps)."""
    from torch.profiler import ProfilerActivity, profile

    device = args.device
    batch = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)).to(device)
    model = _model(args, device, layers)
    opt = _build(name, model)
    model(input_ids=batch, labels=batch).loss.backward()
    for i in range(max(args.warmup, 1)):
        opt.step()
    if args.paper_cadence and _shampoo(opt) is not None:
        _hold_before_roots(_shampoo(opt))
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=acts, record_shapes=True) as prof:
        opt.step()
        _sync(device)
    print(f"profile of one {name} step, {layers} layer(s):")
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=rows,
                                                             max_name_column_width=32, max_shapes_column_width=60))


def wiring_overhead(args, name: str, reps: int) -> tuple[float, float]:
    """(combined, direct) median optimizer-step seconds. Both step the *same* library optimizer
    objects on the same parameters and gradients, interleaved: ``combined.step()`` against calling
    each sub-optimizer's ``step()`` by hand. Timing two separately built models instead showed
    +-5% differences that no wiring can cause (memory placement), so they share one model here."""
    from hf_optquant.optim import build_optimizer

    device = args.device
    batch = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)).to(device)
    model = _model(args, device, int(args.layers.split(",")[0]))
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
    p.add_argument("--layers", default="6", help="layer count(s), comma-separated (0: the preset's); two or more "
                   "are extrapolated linearly to --project-layers")
    p.add_argument("--project-layers", type=int, default=0, help="depth of the extrapolation (0: the preset's)")
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--tokens-per-step", type=int, default=512 * 1024,
                   help="tokens per optimizer step of the projection (the paper: 512 x 1024)")
    p.add_argument("--warmup", type=int, default=25)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--optimizers", default=",".join(NAMES), help="comma-separated subset (adamw first for ratios)")
    p.add_argument("--paper-cadence", action="store_true",
                   help="Shampoo's roots timed apart, PSGD averaged over the paper's run (see the module docstring)")
    p.add_argument("--eigh-max-n", type=int, default=4096,
                   help="--paper-cadence: largest factor whose inverse root is timed (larger: extrapolated)")
    p.add_argument("--profile", default="", help="also print a torch.profiler table of one step of these optimizers")
    p.add_argument("--overhead-reps", type=int, default=60, help="0: skip the wiring-overhead table")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="default: cuda when a GPU is present, else cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from hf_optquant.models import SIZE_PRESETS

    preset = SIZE_PRESETS[args.size]
    layer_counts = [int(x) for x in args.layers.split(",")]
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        p.error(f"unknown optimizer {unknown[0]!r}; use {', '.join(NAMES)}")
    if args.paper_cadence and "psgd" in names:
        names.insert(names.index("psgd") + 1, PSGD_FLOOR)

    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    results = {}
    for layers in layer_counts:
        res = step_times(args, layers, names)
        results[layers or preset.num_layers] = res
    depth = args.project_layers or preset.num_layers
    if len(results) >= 2:
        results[f"{depth} (extrapolated)"] = extrapolate(results, names, depth)
    for key, res in results.items():
        # 20 tokens per parameter (the paper) of the model at this depth, in steps of --tokens-per-step
        res["psgd_update_fraction"] = psgd_update_fraction(max(1, round(20 * res["n_params"] / args.tokens_per_step)))
        finish(res, names, args)
    print(f"model: {args.size} hidden={args.hidden or 'preset'} vocab={args.vocab}; batch {args.batch} x {args.seq} "
          f"tokens; {args.steps} timed steps after {args.warmup} warm-up, {args.device}, {args.threads} threads"
          f"{'; paper cadence' if args.paper_cadence else ''}")
    if load_before is not None:
        print(f"load average (1, 5, 15 min) before: {', '.join(f'{x:.1f}' for x in load_before)}; after: "
              f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} (other jobs share the cores: wall times are "
              f"slowed alike for all optimizers, ratios are side by side)")
    for key, res in results.items():
        note = ""
        if PSGD_FLOOR in names:
            note = f"; psgd updates its preconditioner in {100 * res['psgd_update_fraction']:.1f}% of the run's steps"
        print_table(res, names, f"\n{key} layer(s){note}")
    for name in [n.strip() for n in args.profile.split(",") if n.strip()]:
        profile_step(args, name, layer_counts[0])
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
