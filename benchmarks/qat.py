"""QAT cost: training-step time with fake quantization / full-precision step time, per quantizer,
and the Hadamard transform's cost (dense block matmul vs a fast Walsh-Hadamard transform).

    python benchmarks/qat.py [--size 50M] [--batch 4] [--seq 256] [--steps 6] [--device cpu]

Every figure is measured side by side in this one run (interleaved, median of ``--steps``).
Goal on GPU: QAT step <= 1.15x the full-precision step. The fast WHT is the pure-PyTorch
``hadamard-transform`` package (optional, benchmark only: ``pip install hadamard-transform``).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn, device, reps):
    fn()  # warm-up (allocations, kernels, caches)
    out = []
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def step_times(args) -> dict[str, float]:
    from hf_optquant.models import build_model
    from hf_optquant.optim import build_optimizer
    from hf_optquant.qat import QATConfig, prepare_qat

    torch.manual_seed(0)
    variants = {"fp": None,
                "rtn": QATConfig(quantizer="rtn", w_bits=4, a_bits=4),
                "quest": QATConfig(quantizer="quest", w_bits=4, a_bits=4, hadamard_block=args.block)}
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), device=args.device)
    steps = {}
    for name, cfg in variants.items():
        # intermediate_size 3x hidden keeps every in_features a multiple of the 128 block.
        model = build_model(args.size, vocab_size=args.vocab, seed=0, intermediate_size=3 * args.hidden).to(args.device)
        if cfg is not None:
            prepare_qat(model, cfg)
        opt = build_optimizer("adamw", model, lr=1e-3)

        def step(model=model, opt=opt):
            with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        steps[name] = step
    times = {k: [] for k in steps}
    for fn in steps.values():
        fn()
    for _ in range(args.steps):  # interleaved, so load changes hit every variant alike
        for k, fn in steps.items():
            _sync(args.device)
            t = time.perf_counter()
            fn()
            _sync(args.device)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def hadamard_times(args) -> dict[str, float]:
    from hf_optquant.qat import block_hadamard, hadamard_matrix

    x = torch.randn(args.batch * args.seq, 3 * args.hidden, device=args.device)
    h = hadamard_matrix(args.block, device=args.device)
    out = {"dense block matmul": _time(lambda: block_hadamard(x, args.block, h), args.device, 20)}
    try:
        from hadamard_transform import hadamard_transform
    except ImportError:
        print("hadamard-transform not installed: fast WHT skipped (pip install hadamard-transform)")
        return out
    fast = lambda: hadamard_transform(x.reshape(-1, args.block)).reshape(x.shape)  # noqa: E731
    err = (fast() - block_hadamard(x, args.block, h)).abs().max().item()
    print(f"fast WHT vs dense: max abs difference {err:.2e}")
    out["fast WHT (hadamard-transform)"] = _time(fast, args.device, 20)
    return out


def main():
    from hf_optquant.models import SIZE_PRESETS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="50M")
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (the paper's setting; on GPU)")
    args = p.parse_args()
    args.hidden = SIZE_PRESETS[args.size].hidden_size
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    print(f"model {args.size} (hidden {args.hidden}, mlp {3 * args.hidden}), batch {args.batch}x{args.seq}, "
          f"block {args.block}, {dev}, torch {torch.__version__}")
    st = step_times(args)
    for k, v in st.items():
        print(f"step {k:6s} {v * 1e3:9.1f} ms   ratio to fp {v / st['fp']:.3f}")
    ht = hadamard_times(args)
    base = ht["dense block matmul"]
    for k, v in ht.items():
        print(f"hadamard {k:30s} {v * 1e3:8.3f} ms   ratio to dense {v / base:.2f}")


if __name__ == "__main__":
    main()
