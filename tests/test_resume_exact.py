"""A run killed after its last checkpoint (checkpoint-N of N, before run.json) resumes to exactly
N steps: same weights and log as the uninterrupted run (issue 12 section 2)."""
from __future__ import annotations

import json
import shutil

import torch
from safetensors.torch import load_file

from hf_optquant.models import build_model
from hf_optquant.trainer import OptQuantTrainer, OptQuantTrainingArguments

N = 6
_TIMING = ("_runtime", "_per_second")


def _trainer(out, tokenizer, lm_data):
    # A constant lr, so that one extra step would show in the weights.
    args = OptQuantTrainingArguments(
        output_dir=str(out), max_steps=N, per_device_train_batch_size=8, logging_steps=1, save_strategy="steps",
        save_steps=3, eval_strategy="steps", eval_steps=3, schedule="hf", lr_scheduler_type="constant",
        learning_rate=1e-2, optimizer="adamw", report_to="none", use_cpu=True, seed=0, disable_tqdm=True,
        dataloader_num_workers=0)
    return OptQuantTrainer(model=build_model("tiny-1", vocab_size=len(tokenizer), seed=0), args=args,
                           train_dataset=lm_data[0], eval_dataset=torch.utils.data.Subset(lm_data[1], range(8)),
                           processing_class=tokenizer, block_size=64)


def _log(run_dir):
    history = json.loads((run_dir / "run.json").read_text())["log_history"]
    return [{k: v for k, v in h.items() if not k.endswith(_TIMING) and k != "train_loss"} for h in history]


def test_resume_from_the_last_checkpoint_trains_no_extra_step(tmp_path, tokenizer, lm_data):
    full = _trainer(tmp_path / "full", tokenizer, lm_data)
    full.train()
    full.save_model()
    assert full.state.global_step == N
    # Killed after checkpoint-N was written, before the final model and run.json.
    part = tmp_path / "part"
    part.mkdir()
    shutil.copytree(tmp_path / "full" / f"checkpoint-{N}", part / f"checkpoint-{N}")
    resumed = _trainer(part, tokenizer, lm_data)
    out = resumed.train(resume_from_checkpoint=str(part / f"checkpoint-{N}"))
    resumed.save_model()
    assert out.global_step == N and resumed.state.global_step == N
    rec = json.loads((part / "run.json").read_text())
    assert rec["global_step"] == N and rec["tokens_seen"] == N * 8 * 64
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(part / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs from the uninterrupted run"
    # Same log: every step once, the same evaluations (timings and HF's per-call train_loss aside).
    assert _log(tmp_path / "full") == _log(part)
    assert [h["step"] for h in rec["log_history"] if "loss" in h] == list(range(1, N + 1))
    # HF's mean loss over the steps of this call is meaningless for zero steps: not reported as 0.
    assert rec["log_history"][-1]["train_loss"] is None
    assert rec["final_train_loss"] == json.loads((tmp_path / "full" / "run.json").read_text())["final_train_loss"]
