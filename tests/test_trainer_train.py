"""OptQuantTrainer end to end on tiny models: every optimizer trains, resume is exact, WSD, Common Loss."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from hf_optquant.models import build_model
from hf_optquant.trainer import OptQuantTrainer, OptQuantTrainingArguments, wsd_multiplier

OPTS = ["adamw", "muon", "psgd", "scion", "shampoo", "soap"]


def _args(tmp_path, name, **kw):
    base = dict(
        output_dir=str(tmp_path / name),
        max_steps=16,
        per_device_train_batch_size=8,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    base.update(kw)
    return OptQuantTrainingArguments(**base)


def _trainer(tmp_path, name, tokenizer, lm_data, model=None, **kw):
    model = model or build_model("tiny-1", vocab_size=len(tokenizer), seed=0)
    return OptQuantTrainer(model=model, args=_args(tmp_path, name, **kw), train_dataset=lm_data[0],
                           eval_dataset=torch.utils.data.Subset(lm_data[1], range(16)),
                           processing_class=tokenizer, block_size=64)


@pytest.mark.parametrize("opt", OPTS)
def test_each_optimizer_trains_every_parameter(opt, tmp_path, tokenizer, lm_data):
    model = build_model("tiny-1", vocab_size=len(tokenizer), seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tr = _trainer(tmp_path, opt, tokenizer, lm_data, model=model, optimizer=opt)
    tr.train()
    assert json.loads((tmp_path / opt / "run.json").read_text())["final_eval_loss"] is None  # no eval of its own
    tr.evaluate()  # the script's final evaluation: recorded in run.json
    losses = [h["loss"] for h in tr.state.log_history if "loss" in h]
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.05, losses
    for n, p in model.named_parameters():
        assert not torch.equal(before[n], p.detach()), f"{opt}: {n} did not change"
    rec = json.loads((tmp_path / opt / "run.json").read_text())
    assert rec["optimizer"] == opt and rec["tokens_seen"] == 16 * 8 * 64
    assert rec["final_eval_loss"] is not None and rec["n_params"] > 0


def test_wsd_learning_rate_at_chosen_steps(tmp_path, tokenizer, lm_data):
    tr = _trainer(tmp_path, "wsd", tokenizer, lm_data, max_steps=40, learning_rate=1e-2)
    tr.train()
    lrs = [h["learning_rate"] for h in tr.state.log_history if "learning_rate" in h]
    # lrs[i] is the lr of the update at 0-based step i.
    peak = 1e-2
    assert len(lrs) == 40
    assert lrs[0] == pytest.approx(peak * 0.001)  # warm-up starts at 0.001 x peak
    assert lrs[1] == pytest.approx(peak * (0.001 + 0.999 * 1 / 2))  # 5% of 40 = 2 warm-up steps
    assert lrs[2] == pytest.approx(peak)
    assert lrs[20] == pytest.approx(peak)  # stable phase
    assert lrs[32] == pytest.approx(peak * (1 - 1 / 8))  # decay: 20% of 40 = 8 steps, first one
    assert lrs[39] == pytest.approx(0.0, abs=1e-12)
    assert [wsd_multiplier(s, 40) for s in (0, 2, 32, 39)] == pytest.approx([0.001, 1.0, 0.875, 0.0])


@pytest.mark.parametrize("opt", ["adamw", "muon", "shampoo"])
def test_resume_from_mid_run_checkpoint_is_exact(opt, tmp_path, tokenizer, lm_data):
    full = _trainer(tmp_path, "full", tokenizer, lm_data, optimizer=opt, max_steps=12, save_strategy="steps",
                    save_steps=6)
    full.train()
    full.save_model()
    part = tmp_path / "part"
    part.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-6", part / "checkpoint-6")
    resumed = _trainer(tmp_path, "part", tokenizer, lm_data, optimizer=opt, max_steps=12, save_strategy="steps",
                       save_steps=6)
    resumed.train(resume_from_checkpoint=str(part / "checkpoint-6"))
    resumed.save_model()
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(part / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        # CPU kernels are deterministic for these optimizers: bit-exact.
        assert torch.equal(a[k], b[k]), f"{opt}: {k} differs after resume"


def test_common_loss_checkpoint_at_first_crossing(tmp_path, tokenizer, lm_data):
    probe = _trainer(tmp_path, "probe", tokenizer, lm_data, max_steps=20, eval_strategy="steps", eval_steps=5)
    probe.train()
    evals = [(h["step"], h["eval_loss"]) for h in probe.state.log_history if "eval_loss" in h and h["step"] <= 20]
    (_, l1), (s2, l2) = evals[1], evals[2]
    assert l2 < l1
    threshold = (l1 + l2) / 2  # crossed first at the third evaluation
    tr = _trainer(tmp_path, "cl", tokenizer, lm_data, max_steps=20, eval_strategy="steps", eval_steps=5,
                  save_at_eval_loss=threshold)
    tr.train()
    rec = json.loads((tmp_path / "cl" / "common_loss" / "common_loss.json").read_text())
    assert rec["step"] == s2 == 15
    assert rec["tokens"] == 15 * 8 * 64
    assert rec["eval_loss"] < threshold
    assert (tmp_path / "cl" / "common_loss" / "model.safetensors").exists()
    run = json.loads((tmp_path / "cl" / "run.json").read_text())
    assert run["common_loss"]["step"] == 15
