"""Arguments as HF users write them: HfArgumentParser, JSON dict fields, YAML + flags, no silent ignores,
and one final evaluation (the script's)."""
from __future__ import annotations

import dataclasses
import json
import shlex

import pytest
import torch
from transformers import HfArgumentParser, TrainerCallback

from hf_optquant.cli import main
from hf_optquant.errors import ConfigError
from hf_optquant.models import build_model
from hf_optquant.trainer import OptQuantTrainer, OptQuantTrainingArguments
from hf_optquant.trainer.job import TrainJobArguments
from hf_optquant.trainer.parsing import parse_train_config

BASE = ["--output_dir", "unused", "--report_to", "none", "--use_cpu", "true"]


def _hf_parse(argv):
    (args,) = HfArgumentParser(OptQuantTrainingArguments).parse_args_into_dataclasses(BASE + argv)
    return args


def _help_example(field_name: str) -> list[str]:
    """The ``--flag 'value'`` example in a field's help text, split as a shell would."""
    help_text = {f.name: f.metadata["help"] for f in dataclasses.fields(OptQuantTrainingArguments)}[field_name]
    example = help_text.split("e.g. ", 1)[1].rstrip(".")
    return shlex.split(example)


@pytest.mark.parametrize("field_name", ["qat", "optimizer_kwargs"])
def test_help_examples_parse_as_written_in_a_users_hfargumentparser(field_name):
    argv = _help_example(field_name)
    assert argv[0] == f"--{field_name}"
    args = _hf_parse(["--optimizer", "muon", *argv])
    assert getattr(args, field_name) == json.loads(argv[1])


def test_yaml_then_flags_flags_win_and_dict_fields_merge(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: tiny-1\noptimizer: adamw\nmax_steps: 7\nlearning_rate: 1e-3\n"
                   "qat: {quantizer: quest, w_bits: 4, a_bits: 4}\noutput_dir: x\n")
    job, targs = parse_train_config(str(cfg), ["--optimizer", "soap", "--max-steps", "9", "--qat.w_bits", "3",
                                               "--optimizer_kwargs", '{"precondition_frequency": 5}'])
    assert isinstance(job, TrainJobArguments) and job.model == "tiny-1"
    assert (targs.optimizer, targs.max_steps, targs.learning_rate) == ("soap", 9, 1e-3)
    assert targs.qat == {"quantizer": "quest", "w_bits": 3, "a_bits": 4}
    assert targs.optimizer_kwargs == {"precondition_frequency": 5}
    # The same JSON as a user's script takes it replaces the YAML block.
    _, targs = parse_train_config(str(cfg), ["--qat", '{"quantizer": "rtn", "w_bits": 8, "a_bits": null}'])
    assert targs.qat == {"quantizer": "rtn", "w_bits": 8, "a_bits": None}


@pytest.mark.parametrize("argv, field, words", [
    (["--max_steps", "many"], "max_steps", "invalid int"),
    (["--lerning_rate", "1e-3"], "lerning_rate", "did you mean 'learning_rate'"),
    (["--qat", "{quantizer: quest}"], "qat", "JSON"),
    (["--optim", "adafactor"], "optim", "optimizer='adamw'"),
    (["--lr_scheduler_type", "cosine"], "lr_scheduler_type", "schedule='wsd'"),
    (["--eval_strategy", "sometimes"], "eval_strategy", "invalid choice"),
])
def test_train_cli_bad_flag_is_one_line(argv, field, words, tmp_path, capsys):
    assert main(["train", "trainer_configs/tiny.yaml", "--output_dir", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"error: {field}:" in err and words in err and "fix:" in err, err
    assert not (tmp_path / "run").exists()


def test_train_help_lists_every_field_with_its_help(capsys):
    assert main(["train", "--help"]) == 0  # the CLI turns argparse's exit into its return code
    out = " ".join(capsys.readouterr().out.split())
    for t in (TrainJobArguments, OptQuantTrainingArguments):
        for f in dataclasses.fields(t):
            if f.init:
                assert f"--{f.name} " in out, f.name
    for name in ("optimizer", "qat", "save_at_eval_loss", "schedule"):
        help_text = {f.name: f.metadata["help"] for f in dataclasses.fields(OptQuantTrainingArguments)}[name]
        assert " ".join(help_text.split()[:6]) in out, name


@pytest.mark.parametrize("argv, field, wins", [
    (["--optim", "adafactor"], "optim", "optimizer"),
    (["--adam_beta2", "0.95"], "adam_beta2", "optimizer_kwargs"),
    (["--lr_scheduler_type", "cosine"], "lr_scheduler_type", "schedule"),
    (["--warmup_steps", "10"], "warmup_steps", "wsd_warmup_fraction"),
])
def test_a_field_the_trainer_would_ignore_is_an_error_naming_the_winner(argv, field, wins):
    with pytest.raises(ConfigError) as exc:
        _hf_parse(["--optimizer", "muon", *argv])
    assert exc.value.field == field and f"from {wins}=" in str(exc.value)


def test_hf_schedule_uses_lr_scheduler_type(tokenizer, lm_data, tmp_path):
    args = OptQuantTrainingArguments(output_dir=str(tmp_path / "r"), schedule="hf", lr_scheduler_type="cosine",
                                     warmup_steps=2, max_steps=8, report_to="none", use_cpu=True)
    tr = OptQuantTrainer(model=build_model("tiny-1", vocab_size=len(tokenizer), seed=0), args=args,
                         train_dataset=lm_data[0])
    tr.create_optimizer_and_scheduler(8)
    lrs = []
    for _ in range(8):
        lrs.append(tr.lr_scheduler.get_last_lr()[0])
        tr.optimizer.step()
        tr.lr_scheduler.step()
    peak = args.learning_rate
    # transformers' cosine with 2 warm-up steps: 0, peak/2, then a half cosine over 6 steps.
    want = [peak * s / 2 for s in (0, 1)] + [peak * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * k / 6)).item())
                                             for k in range(6)]
    assert lrs == pytest.approx(want, rel=1e-6)


class _CountEvals(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_evaluate(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_run_clm_flow_evaluates_and_saves_once(tokenizer, lm_data, tmp_path):
    """run_clm.py calls train(), save_model(), then evaluate() (--do_eval): the evaluations are the
    Trainer's own (every eval_steps and at the last step) plus the script's, none added; run.json records
    the last one, and the finishing step of ``hf-optquant train`` adds none after a last-step evaluation."""
    from hf_optquant.trainer.job import finish_run

    counter = _CountEvals()
    args = OptQuantTrainingArguments(output_dir=str(tmp_path / "r"), optimizer="muon", max_steps=6,
                                     per_device_train_batch_size=4, eval_strategy="steps", eval_steps=4,
                                     save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
    tr = OptQuantTrainer(model=build_model("tiny-1", vocab_size=len(tokenizer), seed=0), args=args,
                         train_dataset=lm_data[0], eval_dataset=torch.utils.data.Subset(lm_data[1], range(8)),
                         callbacks=[counter], block_size=64)
    tr.train()
    assert counter.steps == [4, 6] and not (tmp_path / "r" / "model.safetensors").exists()
    rec = json.loads((tmp_path / "r" / "run.json").read_text())
    assert rec["final_eval_loss"] == [h["eval_loss"] for h in rec["log_history"] if "eval_loss" in h][-1]
    assert rec["wall_time_s"] > 0
    tr.save_model()
    metrics = tr.evaluate()
    assert counter.steps == [4, 6, 6]
    assert json.loads((tmp_path / "r" / "run.json").read_text())["final_eval_loss"] == metrics["eval_loss"]
    finish_run(tr)  # what hf-optquant train does after train(): the step-6 evaluation is the final one
    assert counter.steps == [4, 6, 6] and (tmp_path / "r" / "model.safetensors").exists()


def test_missing_example_config_names_the_installed_copy(tmp_path, monkeypatch):
    from hf_optquant.resources import resource_path

    monkeypatch.chdir(tmp_path)  # e.g. a wheel install: no trainer_configs/ in the working folder
    with pytest.raises(ConfigError, match="use the copy installed") as exc:
        parse_train_config("trainer_configs/tiny.yaml", [])
    shipped = str(resource_path("trainer_configs", "tiny.yaml"))
    assert shipped in str(exc.value)
    job, targs = parse_train_config(shipped, ["--output_dir", str(tmp_path / "r")])
    import yaml

    want = yaml.safe_load(open(shipped))
    assert job.model == want["model"] and targs.max_steps == want["max_steps"]
