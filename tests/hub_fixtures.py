"""Artefacts and environment for the hub tests (imported by tests/test_hub_*.py).

Run dirs, eval.json files and study dirs are written here in the documented formats
(docs/DEVELOPING.md) from the conftest ``trained_tiny_dir`` model, so these tests do not
depend on the trainer or the study pipeline.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest
from hub_server import FakeHub

TOKEN = "hf_TESTtoken0123456789abcdefSECRET"

# Any request that is not to loopback goes to a dead proxy: the tests can never reach the internet.
_DEAD_PROXY = "http://127.0.0.1:9"


def write_run_dir(model_dir: Path, out: Path, *, optimizer: str = "adamw", qat: dict | None = None) -> Path:
    """A run dir as ``hf-optquant train`` writes it: model files, run.json, and local-only leftovers."""
    from safetensors import safe_open

    shutil.copytree(model_dir, out)
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        sizes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    numel = {k: math.prod(s) for k, s in sizes.items()}
    n = sum(numel.values())
    run = {
        "optimizer": optimizer, "optimizer_kwargs": {"betas": [0.9, 0.95]},
        "optimizer_hparams": {"lr": 3e-3, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.0},
        "learning_rate": 3e-3, "model_size": "tiny-2", "n_params": n,
        "n_params_non_embedding": n - sum(v for k, v in numel.items() if "embed" in k), "global_step": 80,
        "tokens_seen": 80 * 16 * 64, "final_train_loss": 5.1, "final_eval_loss": 5.3, "wall_time_s": 12.5,
        "versions": {"torch": "2.13", "transformers": "5.23"}, "qat": qat, "common_loss": None,
        # TrainingArguments.to_dict masks hub_token; a hand-written record might not: it must never be published.
        "config": {"learning_rate": 3e-3, "dataset": "ptb", "hub_token": TOKEN},
        "log_history": [{"step": 80, "loss": 5.1}],
    }
    (out / "run.json").write_text(json.dumps(run))
    (out / "training_args.bin").write_bytes(b"\x80pickle")
    (out / "checkpoint-40").mkdir()
    (out / "checkpoint-40" / "optimizer.pt").write_bytes(b"state")
    return out


def write_eval(model_dir: Path, *, val_loss: float, accs: dict[str, float], baseline: Path | None = None,
               base: dict | None = None) -> dict:
    res = {"model": str(model_dir), "val_loss": val_loss, "val_ppl": math.exp(val_loss),
           "tasks": {t: {"acc": a - 0.01, "acc_norm": a, "acc_norm_stderr": 0.02} for t, a in accs.items()},
           "mean_acc_norm": sum(accs.values()) / len(accs), "n_eval_tokens": 4096, "degradation": None}
    if base is not None:
        res["degradation"] = {
            "baseline": str(baseline),
            "val_loss": {"before": base["val_loss"], "after": val_loss, "absolute": val_loss - base["val_loss"],
                         "relative": (val_loss - base["val_loss"]) / base["val_loss"],
                         "drop": val_loss - base["val_loss"]},
            "mean_acc_norm": {"before": base["mean_acc_norm"], "after": res["mean_acc_norm"],
                              "absolute": res["mean_acc_norm"] - base["mean_acc_norm"],
                              "relative": (res["mean_acc_norm"] - base["mean_acc_norm"]) / base["mean_acc_norm"],
                              "drop": base["mean_acc_norm"] - res["mean_acc_norm"]}}
    (model_dir / "eval.json").write_text(json.dumps(res))
    return res


def result_rows(study: str, run_ids: list[str], seed: int) -> list[dict]:
    import random

    rng = random.Random(seed)
    rows = []
    for i, rid in enumerate(run_ids):
        opt = ["adamw", "muon", "shampoo"][i % 3]
        loss = 4 + rng.random()
        rows.append({"run_id": rid, "study": study, "optimizer": opt, "model_size": "tiny-2",
                     "n_params": 100_000 + i, "tokens": 2_000_000, "precision": ["full", "ptq", "qat"][i % 3],
                     "method": ["none", "rtn", "quest-qat"][i % 3], "w_bits": [None, 4, 4][i % 3],
                     "a_bits": [None, 4, 4][i % 3], "val_loss": loss, "val_ppl": math.exp(loss),
                     "mean_acc_norm": rng.random(), "mmr": 10 * rng.random(), "kurtosis": rng.random(),
                     "r_l": rng.random(), "wall_time_s": 60 * rng.random(),
                     "versions": json.dumps({"torch": "2.13"})})
    return rows


def write_study_dir(out: Path, name: str, rows: list[dict], *, fits: bool = True) -> Path:
    import pandas as pd

    out.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(out / "results.parquet")
    (out / "report.md").write_text(f"# Study {name}\n\n{len(rows)} runs.\n")
    if fits:
        (out / "fits").mkdir()
        fit = {opt: {"form": "reduced",
                     "params": {"A": 400.0 + k, "B": 0.0, "E": 1.5 + k / 10, "alpha": 0.3, "beta": 0.0,
                                "rho": {"qat": 0.8 + k / 50}},
                     "ci": {"A": [380.0 + k, 420.0 + k], "alpha": [0.28, 0.32], "E": [1.4, 1.6],
                            "rho": {"qat": [0.75, 0.9]}},
                     "loo_rmse": 0.01 * (k + 1), "n_points": 4}
               for k, opt in enumerate(["adamw", "muon", "shampoo"])}
        (out / "fits" / "scaling.json").write_text(json.dumps(fit))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([1, 2], [2, 1])
        fig.savefig(out / "fits" / "scaling.png")
        plt.close(fig)
    return out


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    """Token in HF_TOKEN, a private HF_HOME (no saved login), online, Xet off (the fake Hub has no Xet).

    ``huggingface_hub`` reads HF_HUB_OFFLINE / HF_HUB_DISABLE_XET once at import (and conftest
    sets offline mode for the suite), so their module constants are set for the test's duration.
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf_home" / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(var, _DEAD_PROXY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return tmp_path


def client_env(hub: FakeHub, home: Path) -> dict:
    """Environment of a fresh consumer process: the fake Hub as endpoint, no token, no proxies out."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_OFFLINE")) and "PROXY" not in k.upper()}
    env.update({"HF_ENDPOINT": hub.url, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
                "HF_HUB_DISABLE_XET": "1", "TOKENIZERS_PARALLELISM": "false", "HTTP_PROXY": _DEAD_PROXY,
                "HTTPS_PROXY": _DEAD_PROXY, "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": ""})
    return env


PYTHON = sys.executable
