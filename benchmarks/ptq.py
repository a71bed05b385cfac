"""GPTQ benchmark: hf_optquant's GPTQ vs llm-compressor's and gptqmodel's on the same model and
calibration tokens: wall time and per-layer reconstruction error (and ours vs RTN).

Each external library runs in its own virtualenv under benchmarks/.venvs (created here:
llm-compressor pins older transformers/hub and gptqmodel pulls its own torch/numpy, so neither
can share hf_optquant's environment). Errors are measured here, identically for every method:
for each linear, ||(W - W_q) X||^2 / ||W X||^2 with X the full-precision model's inputs to that
layer on the calibration tokens (through the Hessian, see hf_optquant.ptq.reconstruction_error).

    python benchmarks/ptq.py [--size tiny-7] [--n-calibration 64] [--seq-len 128] [--skip-external | --external llmcompressor]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
EXTERNAL = {"llmcompressor": "llmcompressor", "gptqmodel": "gptqmodel"}


# ---------------------------------------------------------------- workers (run inside the venvs)
def _worker_llmcompressor(work: Path, bits: int) -> dict:
    import torch
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier
    from transformers import AutoModelForCausalLM

    ids = torch.load(work / "calib.pt")
    model = AutoModelForCausalLM.from_pretrained(work / "fp", dtype=torch.float32)
    ds = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(
        num_bits=bits, type="int", symmetric=True, strategy="channel"))
    recipe = GPTQModifier(config_groups={"group_0": scheme}, ignore=["lm_head"], block_size=128,
                          dampening_frac=0.01)
    print("llm-compressor GPTQModifier actorder:", getattr(recipe, "actorder", "n/a"), flush=True)
    t = time.perf_counter()
    oneshot(model=model, dataset=ds, recipe=recipe, num_calibration_samples=ids.shape[0],
            max_seq_length=ids.shape[1])
    wall = time.perf_counter() - t
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize

    weights = {}
    for name, m in model.named_modules():
        if hasattr(m, "weight_scale") and isinstance(m, torch.nn.Linear):
            args = m.quantization_scheme.weights
            weights[name] = fake_quantize(m.weight.data, m.weight_scale, m.weight_zero_point, args).float()
    return {"wall_s": wall, "weights": weights}


def _worker_gptqmodel(work: Path, bits: int) -> dict:
    import torch
    from gptqmodel import GPTQModel, QuantizeConfig

    ids = torch.load(work / "calib.pt")
    calib = [{"input_ids": row.tolist(), "attention_mask": [1] * len(row)} for row in ids]
    model = GPTQModel.load(str(work / "fp"), QuantizeConfig(bits=bits, group_size=-1, desc_act=False, sym=True,
                                                            damp_percent=0.01), device="cpu")
    t = time.perf_counter()
    model.quantize(calib, batch_size=8)
    wall = time.perf_counter() - t
    weights = {}
    for name, m in model.model.named_modules():
        if hasattr(m, "dequantize_weight"):
            weights[name] = m.dequantize_weight().T.float().contiguous()
    return {"wall_s": wall, "weights": weights}


def worker(name: str, work: Path, bits: int) -> None:
    out = {"llmcompressor": _worker_llmcompressor, "gptqmodel": _worker_gptqmodel}[name](work, bits)
    import torch

    torch.save(out, work / f"{name}.pt")


# ---------------------------------------------------------------- driver (hf_optquant's environment)
def ensure_venv(name: str, log: Path) -> Path | None:
    """Create benchmarks/.venvs/NAME with the package; None (and the reason in ``log``) if that fails."""
    py = VENVS / name / "bin" / "python"
    if py.exists() and subprocess.run([py, "-c", f"import {name}"], capture_output=True).returncode == 0:
        return py
    VENVS.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        # --system-site-packages reuses the CPU torch already here; the package's own pins win inside the venv.
        for cmd in ([sys.executable, "-m", "venv", "--system-site-packages", str(VENVS / name)],
                    [str(VENVS / name / "bin" / "pip"), "install", EXTERNAL[name]]):
            if subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=3600).returncode != 0:
                return None
    return py


def prepare(work: Path, size: str, n: int, seq_len: int, train_steps: int):
    import torch

    from hf_optquant.data import build_lm_datasets, ptb_splits, train_bpe_tokenizer
    from hf_optquant.models import build_model

    splits = ptb_splits()
    tok = train_bpe_tokenizer(splits["train"][:20000], vocab_size=2048)
    torch.manual_seed(0)
    model = build_model(size, vocab_size=len(tok))
    train, _, _ = build_lm_datasets(tok, {k: v[:20000] for k, v in splits.items()}, seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(train_steps):  # a briefly trained model has the structured weights PTQ meets in practice
        b = train.blocks[torch.randint(0, len(train), (16,), generator=g)]
        model(input_ids=b, labels=b).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval().save_pretrained(work / "fp")
    tok.save_pretrained(work / "fp")
    from hf_optquant.data import calibration_blocks

    calib = calibration_blocks(tok, "ptb", n, seq_len, seed=1)
    torch.save(calib, work / "calib.pt")
    return model, calib


def layer_hessians(model, calib, names):
    from hf_optquant.ptq.calibrate import collect_hessians

    mods = dict(model.named_modules())
    calls = [((), {"input_ids": calib[i:i + 8]}) for i in range(0, calib.shape[0], 8)]
    return {n: H for n, (H, _) in collect_hessians(model, {n: mods[n] for n in names}, calls).items()}


def errors(model, weights: dict, H: dict) -> dict:
    from hf_optquant.ptq import reconstruction_error

    mods = dict(model.named_modules())
    out = {}
    for n, Wq in weights.items():
        W = mods[n].weight.data
        zero = reconstruction_error(W, 0 * W, H[n])
        out[n] = reconstruction_error(W, Wq, H[n]) / zero
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="tiny-7")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--n-calibration", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--train-steps", type=int, default=100)
    ap.add_argument("--work", default=str(VENVS / "work"))
    ap.add_argument("--skip-external", action="store_true")
    ap.add_argument("--external", nargs="+", choices=sorted(EXTERNAL), default=sorted(EXTERNAL),
                    help="which external GPTQ implementations to compare against (default: both)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = Path(a.work)
    if a.worker:
        return worker(a.worker, work, a.bits)

    import torch

    from hf_optquant.ptq import PTQConfig, quantize_model
    from hf_optquant.quant import dequantize_rtn

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    work.mkdir(parents=True, exist_ok=True)
    model, calib = prepare(work, a.size, a.n_calibration, a.seq_len, a.train_steps)
    results = {}
    # llm-compressor's GPTQModifier defaults to static activation ordering, so ours runs both ways.
    for label, method, act_order in (("rtn", "rtn", False), ("gptq", "gptq", False),
                                     ("gptq-actorder", "gptq", True)):
        cfg = PTQConfig(method=method, w_bits=a.bits, a_bits=None, granularity="row", act_order=act_order)
        t = time.perf_counter()
        _, qw = quantize_model(model, cfg, calibration=calib if method == "gptq" else None)
        wall = time.perf_counter() - t
        results[f"hf_optquant-{label}"] = {"wall_s": wall, "weights": {
            n: dequantize_rtn(q.float(), s, "row") for n, (q, s) in qw.items()}}
    names = list(results["hf_optquant-gptq"]["weights"])
    H = layer_hessians(model, calib, names)
    notes = {}
    if not a.skip_external:
        for name in a.external:
            log = VENVS / f"{name}.log"
            py = ensure_venv(name, log)
            if py is None:
                notes[name] = f"could not install (see {log})"
                continue
            env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
            t = time.perf_counter()
            proc = subprocess.run([str(py), __file__, "--worker", name, "--work", str(work), "--bits", str(a.bits)],
                                  capture_output=True, text=True, env=env, timeout=3600)
            if proc.returncode != 0 or not (work / f"{name}.pt").exists():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                notes[name] = f"failed in its venv after {time.perf_counter() - t:.0f}s: {tail[0][:300]}"
                (VENVS / f"{name}.run.log").write_text(proc.stdout + proc.stderr)
                continue
            results[name] = torch.load(work / f"{name}.pt")
            notes[name] = " ".join(line for line in proc.stdout.splitlines() if "actorder" in line) or "ok"
    rows = []
    for name, r in results.items():
        e = errors(model, {n: w for n, w in r["weights"].items() if n in H}, H)
        rows.append({"method": name, "wall_s": r["wall_s"], "layers": len(e),
                     "mean_rel_err": sum(e.values()) / max(len(e), 1), "per_layer": e})
    ours = next(r for r in rows if r["method"] == "hf_optquant-gptq")
    print(f"model {a.size}, W{a.bits} per-row, {a.n_calibration} x {a.seq_len} calibration tokens")
    print(f"{'method':<26}{'wall s':>9}{'mean rel err':>15}{'err / ours':>12}{'time / ours':>13}")
    for r in rows:
        print(f"{r['method']:<26}{r['wall_s']:>9.2f}{r['mean_rel_err']:>15.5f}"
              f"{r['mean_rel_err'] / ours['mean_rel_err']:>12.3f}{r['wall_s'] / ours['wall_s']:>13.2f}")
    for name, note in notes.items():
        print(f"{name}: {note}")
    (work / "results.json").write_text(json.dumps({"rows": rows, "notes": notes}, indent=1))


if __name__ == "__main__":
    main()
