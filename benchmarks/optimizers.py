"""Optimizer cost: training-step time relative to AdamW, optimizer-state memory per parameter,
and the overhead of hf_optquant's combined wiring against calling the library optimizers directly.

    python benchmarks/optimizers.py [--size tiny-7] [--hidden 256] [--layers 6] [--vocab 4096]
                                    [--batch 8] [--seq 128] [--warmup 25] [--steps 40] [--device cpu]
    # the 125M preset's TRUE shapes (hidden 768, MLP 2048, the paper's 32,000-token vocabulary), one layer
    # on CPU, projected to the preset's 12 layers, with the authors' preconditioner cadences
    # (issue 18 section 2; see benchmarks/RESULTS.md):
    python benchmarks/optimizers.py --size 125M --hidden 0 --layers 1 --vocab 32000 --batch 2 --seq 128 \\
        --warmup 2 --steps 10 --paper-cadence --project-layers 12 --overhead-reps 0

Every figure is measured side by side in this one run: the optimizers (each on its own copy of the same
initial model, fed the same batch) take their steps round-robin, so a busy machine slows them alike.
Per optimizer: forward+backward of one microbatch, the optimizer step alone (median, and mean over the
timed steps), their sum (the train step at this microbatch), and a PROJECTION of the train step at the
paper's tokens per step (``--tokens-per-step``, 512 x 1024): n_microbatches x the measured forward+backward
+ the optimizer's mean step; state bytes per parameter. ``--project-layers D`` also projects the model to D
layers from parts measured in the same round-robin: a second optimizer of each kind steps one decoder layer
alone (its per-layer cost and state), and a model with one more layer runs forward+backward (the per-layer
forward+backward); D-layer figures = measured + (D - layers) x per-layer.

Preconditioner cadences. Default: the optimizers run as built, so ``--warmup`` must pass Shampoo's 20
grafted-only steps and ``--steps`` should be a multiple of Shampoo's (20) and SOAP's (10) periods for the
mean to include their periodic eigen/root computations. ``--paper-cadence`` (for shapes where that is
too slow on CPU: a 12288 x 12288 eigendecomposition takes ~15 minutes on 2 cores):
- Shampoo's timed steps are preconditioned steps between roots (its step counters are set to the
  preconditioning start before each step), and the inverse roots, due every ``precondition_frequency`` steps,
  are timed apart with ``matrix_inverse_roots`` on stacks of the factors' sizes (sizes above ``--eigh-max-n``
  scaled as n^3 from the time at ``--eigh-max-n``) and added as roots / frequency.
- PSGD updates its preconditioner with a probability (1.0 for 500 steps, then decaying to 0.03): an extra
  "psgd (no update)" copy runs at the floor probability (no update in the timed steps), and PSGD's mean step
  over the paper's run (20 tokens per parameter at ``--tokens-per-step``) is p x (step with update) + (1 - p)
  x (step without), p the fraction of steps that update under the library's schedule and counter.
- SOAP's eigenbasis (power iteration + QR every 10 steps) runs as built: ``--steps`` 10 includes one.
Paper reference (GPU, 760M): AdamW 6.28 s/step, Shampoo 8.38 s/step (+33%).
"""
from __future__ import annotations

import argparse
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
    scale as n^3 from the time at ``max_n``."""
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
        # The dense symmetric eigensolver is O(n^3); a power fitted between two sizes on shared cores swung
        # from 2.8 to 5.2 with the load, so the exponent is fixed. The time itself is load-sensitive too (a
        # 4096^2 eigh: 4 s idle, 32 s at load 4.5 on 2 cores): compare it with the load average printed.
        t_hi = timed(max_n, root, eps)
        est = count * t_hi * (n / max_n) ** 3
        total += est
        notes.append(f"{count} x {n}^2: {est:.0f} s extrapolated as n^3 from {max_n}^2: {t_hi:.1f} s")
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
    runs, per_layer = {}, bool(args.project_layers)
    for name in names:
        m = _model(args, device, layers)
        # per layer: the same optimizer over one decoder layer alone (routing: its matrices and gains)
        runs[name] = (m, _build(name, m), _build(name, m.model.layers[-1]) if per_layer else None)
    deeper = _model(args, device, layers + 1) if per_layer else None  # forward+backward with one more layer
    n_params = sum(p.numel() for p in {id(p): p for p in runs[names[0]][0].parameters()}.values())
    fb = {n: [] for n in names}
    opt_only, layer_only, fb_deeper = {n: [] for n in names}, {n: [] for n in names}, []

    def timed_step(opt, timed: bool) -> float:
        sh = _shampoo(opt) if args.paper_cadence and timed else None
        if sh is not None:
            _hold_before_roots(sh)
        _sync(device)
        t = time.perf_counter()
        opt.step()
        _sync(device)
        return time.perf_counter() - t

    for i in range(args.warmup + args.steps):
        for name in names:  # round-robin: every optimizer sees the same machine load
            m, opt, lopt = runs[name]
            _sync(device)
            t0 = time.perf_counter()
            m(input_ids=batch, labels=batch).loss.backward()
            _sync(device)
            t1 = time.perf_counter()
            t_opt = timed_step(opt, i >= args.warmup)
            t_layer = timed_step(lopt, i >= args.warmup) if lopt is not None else 0.0  # same gradients
            opt.zero_grad()
            if i >= args.warmup:
                fb[name].append(t1 - t0)
                opt_only[name].append(t_opt)
                layer_only[name].append(t_layer)
        if deeper is not None:
            _sync(device)
            t0 = time.perf_counter()
            deeper(input_ids=batch, labels=batch).loss.backward()
            _sync(device)
            deeper.zero_grad()
            if i >= args.warmup:
                fb_deeper.append(time.perf_counter() - t0)
    out = {"n_params": n_params, "fwd_bwd": statistics.median([t for n in names for t in fb[n]]), "notes": []}
    if deeper is not None:
        out["layer_params"] = sum(p.numel() for p in runs[names[0]][0].model.layers[-1].parameters())
        out["layer_fwd_bwd"] = statistics.median(fb_deeper) - out["fwd_bwd"]
    for name in names:
        _, opt, lopt = runs[name]
        r = {"fwd_bwd_median": statistics.median(fb[name]), "opt_median": statistics.median(opt_only[name]),
             "opt_mean": statistics.fmean(opt_only[name]), "state_bytes": state_bytes(opt)}
        if lopt is not None:
            r.update(layer_opt_median=statistics.median(layer_only[name]),
                     layer_opt_mean=statistics.fmean(layer_only[name]), layer_state_bytes=state_bytes(lopt))
        sh = _shampoo(opt) if args.paper_cadence else None
        if sh is not None:
            secs, notes = root_seconds(sh, device, args.eigh_max_n)
            freq = sh.param_groups[0]["precondition_frequency"]
            r["opt_mean"] += secs / freq
            out["notes"] += [f"shampoo inverse roots every {freq} steps: {secs:.1f} s per round "
                             f"(added to its mean as / {freq})"] + notes
            if lopt is not None:
                lsecs, _ = root_seconds(_shampoo(lopt), device, args.eigh_max_n)
                r["layer_opt_mean"] += lsecs / freq
                out["notes"].append(f"shampoo inverse roots of one layer: {lsecs:.1f} s per round")
        r["full_median"] = r["fwd_bwd_median"] + r["opt_median"]
        out[name] = r
    return out


def project(res: dict, names: list[str], layers: int, depth: int) -> dict:
    """The model at ``depth`` layers from the measured one plus (depth - layers) x the per-layer parts."""
    k = depth - layers
    out = {"n_params": res["n_params"] + k * res["layer_params"], "fwd_bwd": res["fwd_bwd"] + k * res["layer_fwd_bwd"],
           "notes": [f"per decoder layer: forward+backward {res['layer_fwd_bwd'] * 1e3:.0f} ms per microbatch "
                     f"({res['layer_params'] / 1e6:.2f}M parameters)"]}
    for name in names:
        r = res[name]
        out[name] = {
            "fwd_bwd_median": r["fwd_bwd_median"] + k * res["layer_fwd_bwd"],
            "opt_median": r["opt_median"] + k * r["layer_opt_median"],
            "opt_mean": r["opt_mean"] + k * r["layer_opt_mean"],
            "state_bytes": r["state_bytes"] + k * r["layer_state_bytes"],
        }
        out[name]["full_median"] = out[name]["fwd_bwd_median"] + out[name]["opt_median"]
        out["notes"].append(f"{name}: one layer's optimizer step median {r['layer_opt_median'] * 1e3:.0f} ms, "
                            f"mean {r['layer_opt_mean'] * 1e3:.0f} ms, state {r['layer_state_bytes'] / 2**20:.0f} MiB")
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
    for _ in range(max(args.warmup, 1)):
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
    model = _model(args, device, args.layers)
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
    p.add_argument("--project-layers", type=int, default=0,
                   help="also project to this depth from per-layer parts measured in the same run (0: no)")
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

    layers = args.layers or SIZE_PRESETS[args.size].num_layers
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        p.error(f"unknown optimizer {unknown[0]!r}; use {', '.join(NAMES)}")
    if args.paper_cadence and "psgd" in names:
        names.insert(names.index("psgd") + 1, PSGD_FLOOR)

    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    results = {f"{layers} layer(s), measured": step_times(args, layers, names)}
    if args.project_layers:
        results[f"{args.project_layers} layers, projected from the measured parts"] = project(
            results[f"{layers} layer(s), measured"], names, layers, args.project_layers)
    for res in results.values():
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
        print_table(res, names, f"\n{key}{note}")
    for name in [n.strip() for n in args.profile.split(",") if n.strip()]:
        profile_step(args, name, layers)
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
