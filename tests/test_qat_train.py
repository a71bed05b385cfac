"""QAT through OptQuantTrainer: every optimizer trains, runs resume exactly, the CLI takes a qat block."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from hf_optquant.cli import main
from hf_optquant.models import build_model
from hf_optquant.qat import QATLinear, qat_modules
from hf_optquant.trainer import OptQuantTrainer, OptQuantTrainingArguments

QAT = {"quantizer": "quest", "w_bits": 4, "a_bits": 4, "granularity": "row", "hadamard_block": 32}


def _trainer(tmp_path, name, tokenizer, lm_data, model=None, **kw):
    base = dict(output_dir=str(tmp_path / name), max_steps=12, per_device_train_batch_size=8, logging_steps=1,
                save_strategy="no", report_to="none", use_cpu=True, seed=0, disable_tqdm=True,
                dataloader_num_workers=0, qat=QAT)
    base.update(kw)
    model = model or build_model("tiny-1", vocab_size=len(tokenizer), seed=0)
    return OptQuantTrainer(model=model, args=OptQuantTrainingArguments(**base), train_dataset=lm_data[0],
                           processing_class=tokenizer, block_size=64)


@pytest.mark.parametrize("opt", ["adamw", "muon", "psgd", "scion", "shampoo", "soap"])
def test_each_optimizer_trains_under_qat(opt, tmp_path, tokenizer, lm_data):
    model = build_model("tiny-1", vocab_size=len(tokenizer), seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # PSGD with the authors' routing (embedding and gains under Kron too) starts slowly: its preconditioners
    # are learned from the first gradients, so it gets twice the steps to show a clear fall.
    steps = 24 if opt == "psgd" else 12
    tr = _trainer(tmp_path, opt, tokenizer, lm_data, model=model, optimizer=opt, max_steps=steps)
    assert len(qat_modules(tr.model)) == 8 and tr.model.lm_head.weight is tr.model.model.embed_tokens.weight
    # The optimizer was built on the prepared model: its hidden group holds the QAT layers' weights.
    tr.train()
    opt_params = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    assert all(id(m.weight) in opt_params for m in qat_modules(tr.model).values())
    losses = [h["loss"] for h in tr.state.log_history if "loss" in h]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses
    for n, p in model.named_parameters():
        assert not torch.equal(before[n], p.detach()), f"{opt}: {n} did not change"
    rec = json.loads((tmp_path / opt / "run.json").read_text())
    assert rec["qat"]["quantizer"] == "quest" and rec["qat"]["hadamard_block"] == 32


def test_qat_run_resumes_exactly(tmp_path, tokenizer, lm_data):
    kw = dict(optimizer="shampoo", max_steps=8, save_strategy="steps", save_steps=4)
    full = _trainer(tmp_path, "full", tokenizer, lm_data, **kw)
    full.train()
    full.save_model()
    (tmp_path / "part").mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-4", tmp_path / "part" / "checkpoint-4")
    resumed = _trainer(tmp_path, "part", tokenizer, lm_data, **kw)
    resumed.train(resume_from_checkpoint=str(tmp_path / "part" / "checkpoint-4"))
    resumed.save_model()
    assert isinstance(resumed.model.lm_head, QATLinear)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_train_with_qat_block_then_convert(tmp_path, capsys):
    from hf_optquant.qat import convert_qat, load_qat_run

    run = tmp_path / "run"
    args = ["train", "trainer_configs/tiny.yaml", "--max_steps", "3", "--eval_steps", "3", "--save_steps", "3",
            "--max_eval_tokens", "1024", "--disable_tqdm", "true", "--model", "tiny-1", "--vocab_size", "300",
            "--output_dir", str(run), "--optimizer", "soap", "--qat.quantizer", "rtn", "--qat.granularity", "group:32"]
    assert main(args) == 0
    assert json.loads((run / "run.json").read_text())["qat"]["granularity"] == "group:32"
    model = load_qat_run(run)
    assert isinstance(model.lm_head, QATLinear) and model.lm_head.gran.group_size == 32
    out = convert_qat(model, tmp_path / "q")
    assert json.loads((out / "quantization_record.json").read_text())["granularity"] == "group:32"
    # Bad QAT input from the CLI: exit 2, one line, nothing written.
    capsys.readouterr()
    bad = [a if a != str(run) else str(tmp_path / "bad") for a in args[:-4]] + ["--qat.hadamard_block", "48"]
    assert main(bad) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "qat.hadamard_block" in err and "fix:" in err
    assert not (tmp_path / "bad").exists()
