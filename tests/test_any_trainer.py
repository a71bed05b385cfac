"""The six optimizers in a plain ``transformers.Trainer`` (``optimizer_cls_and_kwargs``) and the whole
recipe (optimizer, WSD, QAT, run.json) in TRL's ``SFTTrainer`` through ``OptQuantTrainerMixin``."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from transformers import Trainer, TrainingArguments

from hf_optquant.errors import ConfigError
from hf_optquant.models import build_model
from hf_optquant.optim import CombinedOptimizer, optimizer_cls_and_kwargs, optimizer_hparams
from hf_optquant.trainer import OptQuantTrainerMixin, OptQuantTrainingArguments, wsd_multiplier

COMMON = dict(max_steps=8, per_device_train_batch_size=8, logging_steps=1, save_strategy="no", report_to="none",
              use_cpu=True, seed=0, disable_tqdm=True, dataloader_num_workers=0)


def _changed_all(model, before):
    return [n for n, p in model.named_parameters() if torch.equal(before[n], p.detach())]


@pytest.mark.parametrize("opt", ["muon"])
def test_plain_trainer_with_optimizer_cls_and_kwargs(opt, tmp_path, tokenizer, lm_data):
    model = build_model("tiny-1", vocab_size=len(tokenizer), seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cls_kwargs = optimizer_cls_and_kwargs(opt, learning_rate=3e-3)
    tr = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / opt), **COMMON),
                 train_dataset=lm_data[0], optimizer_cls_and_kwargs=cls_kwargs)
    tr.train()
    inner = getattr(tr.optimizer, "optimizer", tr.optimizer)
    assert isinstance(inner, CombinedOptimizer)
    routed = {g.get("name") for g in inner.param_groups}
    assert {"hidden", "embed", "gain"} <= routed, routed  # the study's routing, not Trainer's decay groups
    assert not _changed_all(model, before), f"{opt}: parameters untouched"
    # The preset's values, not TrainingArguments' (5e-5, 0.0, adamw_torch).
    assert cls_kwargs[1]["weight_decay"] == optimizer_hparams(opt)["weight_decay"]
    with pytest.raises(ConfigError, match="unknown optimizer"):
        optimizer_cls_and_kwargs("lion")


def test_mixin_refuses_plain_arguments(tmp_path, tokenizer):
    class MyTrainer(OptQuantTrainerMixin, Trainer):
        pass

    with pytest.raises(ConfigError, match="MyTrainer needs OptQuantTrainingArguments"):
        MyTrainer(model=build_model("tiny-1", vocab_size=len(tokenizer)),
                  args=TrainingArguments(output_dir=str(tmp_path / "x"), use_cpu=True, report_to="none"))


def test_trl_sft_trainer_with_the_mixin_gets_optimizer_wsd_qat_and_run_json(tmp_path, tokenizer_dir, ptb_small):
    trl = pytest.importorskip("trl", reason="optional: pip install hf_optquant[trl]")
    from datasets import Dataset
    from transformers import AutoTokenizer

    from hf_optquant.qat import qat_modules

    @dataclass
    class SFTOptQuantConfig(OptQuantTrainingArguments, trl.SFTConfig):
        pass

    class OptQuantSFTTrainer(OptQuantTrainerMixin, trl.SFTTrainer):
        pass

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = build_model("tiny-1", vocab_size=len(tok), seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    qat = {"quantizer": "quest", "w_bits": 4, "a_bits": 4, "hadamard_block": 32}
    args = SFTOptQuantConfig(output_dir=str(tmp_path / "sft"), optimizer="soap", qat=qat, max_length=64,
                             gradient_checkpointing=False, bf16=False, **COMMON)
    text = Dataset.from_dict({"text": [s for s in ptb_small["train"][:400] if len(s.split()) > 8][:200]})
    tr = OptQuantSFTTrainer(model=model, args=args, train_dataset=text, processing_class=tok)
    assert len(qat_modules(tr.model)) == 8
    tr.train()
    assert isinstance(tr.optimizer, CombinedOptimizer) or isinstance(tr.optimizer.optimizer, CombinedOptimizer)
    opt_params = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    assert all(id(m.weight) in opt_params for m in qat_modules(tr.model).values())
    lrs = [h["learning_rate"] for h in tr.state.log_history if "learning_rate" in h]
    peak = args.learning_rate
    assert lrs == pytest.approx([peak * wsd_multiplier(s, 8) for s in range(8)])  # WSD, not SFTConfig's linear
    assert not _changed_all(model, before)
    rec = json.loads((tmp_path / "sft" / "run.json").read_text())
    assert rec["optimizer"] == "soap" and rec["qat"]["quantizer"] == "quest" and rec["global_step"] == 8
