"""Memory of reading a few evaluation blocks from a local corpus, at two corpus sizes (flat = streamed and bounded).

Each size runs in a fresh process: peak RSS (ru_maxrss) after importing transformers/datasets, then after
``dataset_blocks(..., max_tokens=65536)`` on a jsonl of N rows; also the documents tokenized and the seconds.

    python benchmarks/eval_blocks.py            # 400k and 1.6M rows (55 MB, 221 MB of jsonl), ~1 min
    python benchmarks/eval_blocks.py --rows 20000 80000   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import os, sys, time, resource, json
os.environ["HF_DATASETS_OFFLINE"] = "1"; os.environ["HF_HUB_OFFLINE"] = "1"
import datasets, transformers  # imported before the baseline: their cost is not the reader's
from transformers import AutoTokenizer
from hf_optquant.data import dataset_blocks
tok = AutoTokenizer.from_pretrained(sys.argv[2])
docs = {"n": 0}
class Counting:
    eos_token_id = tok.eos_token_id
    def __call__(self, texts, **kw):
        docs["n"] += len(texts)
        return tok(texts, **kw)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
b = dataset_blocks(Counting(), sys.argv[1], split="validation", block_size=128, max_tokens=65536)
print(json.dumps({"blocks": list(b.shape), "documents": docs["n"], "s": time.perf_counter() - t0,
                  "base_mib": base / 1024, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, nargs="+", default=[400_000, 1_600_000])
    args = p.parse_args()
    from hf_optquant.data import ptb_splits, train_bpe_tokenizer

    sentences = ptb_splits()["train"]
    with tempfile.TemporaryDirectory() as d:
        tok_dir = Path(d) / "tok"
        train_bpe_tokenizer(sentences[:6000], vocab_size=512).save_pretrained(tok_dir)
        for rows in args.rows:
            corpus = Path(d) / f"corpus{rows}.jsonl"
            with open(corpus, "w") as f:
                for i in range(rows):
                    f.write(json.dumps({"text": f"{sentences[i % len(sentences)]} {i}"}) + "\n")
            env = {**os.environ, "HF_DATASETS_CACHE": str(Path(d) / "cache")}
            out = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(tok_dir)], capture_output=True,
                                 text=True, env=env, check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            print(f"{rows:>9,} rows ({corpus.stat().st_size / 2**20:6.1f} MiB): blocks {tuple(r['blocks'])}, "
                  f"{r['documents']:,} documents tokenized, peak RSS {r['peak_mib']:.0f} MiB "
                  f"(+{r['peak_mib'] - r['base_mib']:.0f} over imports), {r['s']:.2f} s")
            corpus.unlink()


if __name__ == "__main__":
    main()
