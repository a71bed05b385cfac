"""``hf-optquant train``: a real run from YAML, overrides, and one clear line for each bad input."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_optquant.cli import main
from hf_optquant.errors import ConfigError

TINY = "trainer_configs/tiny.yaml"


def _cli(tmp_path, *extra):
    return main(["train", TINY, "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2",
                 "--max_eval_tokens", "2048", "--output_dir", str(tmp_path / "run"), "--disable_tqdm", "true",
                 "--model", "tiny-1", "--vocab_size", "512", *extra])


def test_cli_train_writes_a_complete_run_dir(tmp_path):
    assert _cli(tmp_path, "--optimizer", "muon", "--optimizer_kwargs.momentum", "0.9") == 0
    run = tmp_path / "run"
    rec = json.loads((run / "run.json").read_text())
    for key in ("optimizer", "n_params", "tokens_seen", "final_train_loss", "final_eval_loss", "wall_time_s",
                "versions", "config"):
        assert rec[key] is not None, key
    assert rec["optimizer"] == "muon" and rec["optimizer_kwargs"] == {"momentum": 0.9}
    assert rec["tokens_seen"] == 4 * 16 * 128
    assert rec["versions"]["transformers"]
    model = AutoModelForCausalLM.from_pretrained(run)
    tok = AutoTokenizer.from_pretrained(run)
    ids = tok("the market fell", return_tensors="pt").input_ids
    assert torch.isfinite(model(ids).logits).all()
    # A finished run is skipped, not retrained.
    mtime = (run / "run.json").stat().st_mtime
    assert _cli(tmp_path) == 0
    assert (run / "run.json").stat().st_mtime == mtime


@pytest.mark.parametrize(
    "extra, field",
    [
        (["--optimizer", "lion"], "optimizer"),
        (["--optimizer", "adamw", "--optimizer_kwargs.nesterov", "true"], "nesterov"),
        (["--learning_rate", "-1e-3"], "learning_rate"),
        (["--lerning_rate", "1e-3"], "lerning_rate"),
        (["--dataset", "/nonexistent/corpus.txt"], "dataset"),
        (["--model", "tiny-99"], "model"),
        (["--qat.w_bits", "17"], "bits"),
    ],
)
def test_cli_bad_input_one_line_exit_2_nothing_written(extra, field, tmp_path, capsys):
    assert _cli(tmp_path, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert field in err and "fix:" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_unknown_yaml_key(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: tiny-1\noptimiser: muon\n")
    assert main(["train", str(cfg), "--output_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "optimiser" in err and "did you mean 'optimizer'" in err
    assert not (tmp_path / "run").exists()


def test_model_without_matrices_is_refused(tmp_path, tokenizer):
    from hf_optquant.trainer import OptQuantTrainer, OptQuantTrainingArguments

    class OnlyGains(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.g = torch.nn.Parameter(torch.ones(4))

    args = OptQuantTrainingArguments(output_dir=str(tmp_path / "run"), optimizer="muon", use_cpu=True, report_to="none")
    with pytest.raises(ConfigError, match="2-D"):
        OptQuantTrainer(model=OnlyGains(), args=args)
    assert not (tmp_path / "run").exists()
