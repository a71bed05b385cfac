"""One accelerator benchmark in one table (run through ``benchmarks/accelerator.sh``).

On one GPU, with bf16 autocast (weights and optimizer state in float32, as Trainer's ``bf16=True``):
  - train-step time of every optimizer of the package's table, and its ratio to AdamW, at the 125M and 350M
    presets (the same batch of random token ids for all: this measures speed, not learning);
  - model FLOPs utilisation of each step: (6 N + 12 L d T) tokens / step time / the chip's peak bf16 dense
    FLOP/s, with N the parameters the matmuls touch (non-embedding + the LM head), L layers, d width, T the
    sequence length (the PaLM appendix's count);
  - peak memory per optimizer (``torch.cuda.max_memory_allocated`` over its steps, model included);
  - a QAT step (QuEST W4A4 on the paper's targets) against the full-precision step, AdamW, interleaved;
  - GPTQ (W4, 128 x 2048-token calibration windows on GPU) of one 350M model;
  - the ABC diagnosis (W4A4 RTN, residual-stream MMR and kurtosis on) against one evaluation forward over
    the same batches (float32, as ``hf-optquant diagnose`` runs it).
``--cpu`` runs the same code at tiny sizes (tiny-1 for 125M, tiny-2 for 350M), float32, few steps: a smoke
test of the script that CI runs, not a measurement worth recording.

    bash benchmarks/accelerator.sh [--cpu] [--json OUT.json] [--optimizers adamw,muon] [--steps 10]

Times are the median of ``--steps`` timed steps after ``--warmup`` untimed ones, with
``torch.cuda.synchronize()`` around each.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

# Peak dense bf16 tensor FLOP/s (no sparsity), by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "B200": 2250.0, "A100": 312.0, "L40S": 362.0,
                    "A10G": 125.0, "L4": 121.0, "RTX 4090": 165.0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU (the CI smoke test)")
    p.add_argument("--optimizers", default=None, help="comma-separated subset of the package's optimizers")
    p.add_argument("--steps", type=int, default=None, help="timed steps (GPU 10, CPU 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (GPU 3, CPU 1)")
    p.add_argument("--batch", type=int, default=None, help="sequences per step (GPU 16, CPU 2)")
    p.add_argument("--seq", type=int, default=None, help="tokens per sequence (GPU 1024, CPU 32)")
    p.add_argument("--peak-tflops", type=float, default=None, help="the chip's peak bf16 TFLOP/s (for MFU)")
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    a = p.parse_args(argv)
    gpu = not a.cpu
    a.device = "cuda" if gpu else "cpu"
    a.bf16 = gpu
    a.sizes = {"125M": "125M", "350M": "350M"} if gpu else {"125M": "tiny-1", "350M": "tiny-2"}
    a.steps = a.steps or (10 if gpu else 1)
    a.warmup = a.warmup if a.warmup is not None else (3 if gpu else 1)
    a.batch = a.batch or (16 if gpu else 2)
    a.seq = a.seq or (1024 if gpu else 32)
    return a


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_time(fn, device: str, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


def free(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def peak_flops(a) -> float | None:
    if a.peak_tflops:
        return a.peak_tflops * 1e12
    if not a.device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    return next((v * 1e12 for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def flops_per_step(model, batch: int, seq: int) -> float:
    from hf_optquant.models import count_parameters

    cfg = model.config
    n = count_parameters(model, non_embedding=True) + cfg.vocab_size * cfg.hidden_size * bool(cfg.tie_word_embeddings)
    return (6 * n + 12 * cfg.num_hidden_layers * cfg.hidden_size * seq) * batch * seq


def make_model(size: str, a):
    from hf_optquant.models import build_model

    torch.manual_seed(0)
    return build_model(size).to(a.device)


def random_ids(model, a, n: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, model.config.vocab_size, (n or a.batch, a.seq), generator=g).to(a.device)


def train_step(model, opt, ids, a):
    def step():
        with torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def bench_optimizers(a, names) -> list[dict]:
    from hf_optquant.optim import build_optimizer

    rows = []
    peak = peak_flops(a)
    for label, size in a.sizes.items():
        base = None
        for name in names:
            model = make_model(size, a)
            ids = random_ids(model, a)
            reset_peak(a.device)
            opt = build_optimizer(name, model)
            t = median_time(train_step(model, opt, ids, a), a.device, a.steps, a.warmup)
            print(f"  {label} {name}: {t:.4f} s/step", file=sys.stderr, flush=True)
            mem = peak_mib(a.device)
            base = t if name == "adamw" else base
            mfu = flops_per_step(model, a.batch, a.seq) / t / peak if peak else None
            rows.append({"preset": label, "size": size, "optimizer": name, "step_s": t,
                         "x_adamw": t / base if base else None, "mfu": mfu, "peak_mib": mem})
            del model, opt, ids
            free(a.device)
    return rows


def bench_qat(a) -> dict:
    from hf_optquant.optim import build_optimizer
    from hf_optquant.qat import QATConfig, prepare_qat

    size = a.sizes["350M"]
    steps = {}
    for name in ("full precision", "QuEST W4A4"):
        model = make_model(size, a)
        if name != "full precision":
            block = min(128, model.config.hidden_size)  # tiny CPU sizes are 64 wide
            prepare_qat(model, QATConfig(quantizer="quest", w_bits=4, a_bits=4, hadamard_block=block))
        steps[name] = train_step(model, build_optimizer("adamw", model), random_ids(model, a), a)
    times = {k: [] for k in steps}
    for fn in steps.values():
        for _ in range(a.warmup):
            fn()
    for _ in range(a.steps):  # interleaved: a change of clock or load hits both alike
        for k, fn in steps.items():
            times[k].append(median_time(fn, a.device, 1, 0))
    fp, qat = statistics.median(times["full precision"]), statistics.median(times["QuEST W4A4"])
    del steps
    free(a.device)
    return {"size": size, "fp_step_s": fp, "qat_step_s": qat, "x_fp": qat / fp}


def bench_gptq(a) -> dict:
    from hf_optquant.ptq import PTQConfig, quantize_model

    size = a.sizes["350M"]
    model = make_model(size, a).float().eval()
    n_cal, seq = (128, 2048) if a.device == "cuda" else (8, a.seq)
    seq = min(seq, model.config.max_position_embeddings)
    g = torch.Generator().manual_seed(1)
    calib = torch.randint(0, model.config.vocab_size, (n_cal, seq), generator=g).to(a.device)
    sync(a.device)
    t = time.perf_counter()
    quantize_model(model, PTQConfig(method="gptq", w_bits=4, a_bits=None), calibration=calib)
    sync(a.device)
    out = {"size": size, "gptq_s": time.perf_counter() - t, "calibration": f"{n_cal} x {seq}"}
    del model
    free(a.device)
    return out


def bench_abc(a) -> dict:
    from hf_optquant.metrics import diagnose_models
    from hf_optquant.ptq import PTQConfig, quantize_model

    size = a.sizes["125M"]
    model = make_model(size, a).float().eval()
    qmodel, _ = quantize_model(model, PTQConfig(w_bits=4, a_bits=4))
    ids = random_ids(model, a, n=4 * a.batch)

    @torch.no_grad()
    def forward():
        for i in range(0, ids.shape[0], a.batch):
            b = ids[i:i + a.batch]
            model(input_ids=b, labels=b)

    def abc():
        diagnose_models(model, qmodel, ids, batch_size=a.batch, progress=False)

    fwd = median_time(forward, a.device, max(1, a.steps // 2), 1)
    t = median_time(abc, a.device, max(1, a.steps // 4), 1)
    model = qmodel = None  # release before the next benchmark; the closures above are done
    free(a.device)
    return {"size": size, "forward_s": fwd, "abc_s": t, "x_forward": t / fwd}


def _or_na(v, spec):
    return "n/a" if v is None else format(v, spec)


def table(res: dict) -> str:
    lines = [res["machine"], "", f"{'what':<44}{'time s':>10}{'ratio':>9}{'MFU':>8}{'peak MiB':>10}"]
    for r in res["optimizers"]:
        lines.append(f"{'step ' + r['preset'] + ' (' + r['size'] + ') ' + r['optimizer']:<44}{r['step_s']:>10.4f}"
                     f"{_or_na(r['x_adamw'], '.2f') + 'x':>9}{_or_na(r['mfu'] and 100 * r['mfu'], '.1f'):>8}"
                     f"{_or_na(r['peak_mib'], '.0f'):>10}")
    q, g, b = res["qat"], res["gptq"], res["abc"]
    lines.append(f"{'QAT step, QuEST W4A4 vs full precision (' + q['size'] + ')':<44}{q['qat_step_s']:>10.4f}"
                 f"{q['x_fp']:>8.2f}x")
    lines.append(f"{'GPTQ W4, ' + g['calibration'] + ' tokens (' + g['size'] + ')':<44}{g['gptq_s']:>10.2f}")
    lines.append(f"{'ABC diagnosis vs eval forward (' + b['size'] + ')':<44}{b['abc_s']:>10.4f}{b['x_forward']:>8.2f}x")
    lines.append(f"total wall time {res['wall_s']:.0f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.cpu:  # one thread: tiny matmuls gain nothing from two, and a shared CI machine loses a lot
        torch.set_num_threads(1)
    from hf_optquant.errors import ConfigError
    from hf_optquant.optim import OPTIMIZERS

    names = list(OPTIMIZERS) if not a.optimizers else [n.strip() for n in a.optimizers.split(",") if n.strip()]
    unknown = [n for n in names if n not in OPTIMIZERS]
    try:
        if a.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device", "no CUDA device is visible", "run on a GPU machine, or pass --cpu")
        if unknown:
            raise ConfigError("optimizers", f"unknown optimizer {unknown[0]!r}", f"use {', '.join(OPTIMIZERS)}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = ["adamw"] + [n for n in names if n != "adamw"]  # the baseline first
    dev = torch.cuda.get_device_name() if a.device == "cuda" else f"{platform.machine()} CPU, {os.cpu_count()} cores"
    machine = (f"{dev}; torch {torch.__version__}; {'bf16 autocast' if a.bf16 else 'float32'}; "
               f"{a.batch} x {a.seq} tokens per step; median of {a.steps} steps after {a.warmup}")
    t0 = time.perf_counter()
    res = {"machine": machine, "args": {k: v for k, v in vars(a).items() if k != "sizes"}, "sizes": a.sizes,
           "optimizers": bench_optimizers(a, names), "qat": bench_qat(a), "gptq": bench_gptq(a), "abc": bench_abc(a)}
    res["wall_s"] = time.perf_counter() - t0
    print(table(res))
    if a.json:
        from hf_optquant.io import atomic_write_json

        atomic_write_json(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
