"""Evaluation: perplexity against a direct computation, lm-eval on a local task, the degradation
record (a local ``evaluate`` module), eval.json written beside a quantized checkpoint."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from hf_optquant.cli import main
from hf_optquant.eval import DEGRADATION_METRIC, degradation, evaluate_loss, zero_shot
from hf_optquant.models import load_causal_lm

TASKS = str(Path(__file__).parent / "data" / "lm_eval_tasks")


def test_loss_matches_direct_token_average(trained_tiny_dir):
    model, tok = load_causal_lm(str(trained_tiny_dir))
    blocks = torch.randint(0, len(tok), (3, 16), generator=torch.Generator().manual_seed(0))
    res = evaluate_loss(model, tok, blocks=blocks, batch_size=2)
    with torch.no_grad():
        logits = model(blocks).logits[:, :-1].double()
    nll = -torch.log_softmax(logits, -1).gather(-1, blocks[:, 1:, None]).squeeze(-1)
    assert res["n_eval_tokens"] == 3 * 15
    assert res["val_loss"] == pytest.approx(float(nll.mean()), rel=1e-5)
    assert res["val_ppl"] == pytest.approx(math.exp(float(nll.mean())), rel=1e-5)


def test_degradation_is_a_local_evaluate_module():
    import evaluate

    m = evaluate.load(DEGRADATION_METRIC)  # by path: works offline
    r = m.compute(predictions=[0.45], references=[0.5], higher_is_better=True)
    assert r["before"] == 0.5 and r["after"] == 0.45
    assert r["absolute"] == pytest.approx(-0.05) and r["relative"] == pytest.approx(-0.1)
    assert r["drop"] == pytest.approx(0.05)
    assert degradation(3.0, 3.3, higher_is_better=False)["drop"] == pytest.approx(0.3)


def test_zero_shot_on_local_task_matches_manual_scoring(trained_tiny_dir):
    """lm-eval's acc on the local task equals argmax of summed log-likelihoods computed here."""
    model, tok = load_causal_lm(str(trained_tiny_dir))
    res = zero_shot(model, tok, ["tiny_mc"], include_path=TASKS)
    assert set(res["tiny_mc"]) >= {"acc", "acc_norm"}
    rows = [json.loads(x) for x in (Path(TASKS) / "tiny_mc" / "tiny_mc.jsonl").read_text().splitlines() if x]
    correct = 0
    for row in rows:
        ctx = tok(row["context"], add_special_tokens=False)["input_ids"]
        scores = []
        for choice in row["choices"]:
            full = tok(row["context"] + choice, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([full])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
            cont = range(len(ctx), len(full))
            scores.append(sum(float(logp[i - 1, full[i]]) for i in cont))
        correct += int(max(range(len(scores)), key=scores.__getitem__) == row["label"])
    assert res["tiny_mc"]["acc"] == pytest.approx(correct / len(rows))


def test_eval_cli_writes_eval_json_with_degradation(trained_tiny_dir, tmp_path):
    q = tmp_path / "q"
    assert main(["ptq", str(trained_tiny_dir), "--out", str(q), "--w-bits", "4", "--a-bits", "4"]) == 0
    fp_out = tmp_path / "fp_eval.json"
    common = ["--tasks", "tiny_mc", "--include-path", TASKS, "--max-tokens", "4096", "--block-size", "64"]
    assert main(["eval", str(trained_tiny_dir), *common, "--out", str(fp_out)]) == 0
    assert main(["eval", str(q), *common, "--baseline", str(trained_tiny_dir)]) == 0
    res = json.loads((q / "eval.json").read_text())
    fp = json.loads(fp_out.read_text())
    assert set(res) >= {"model", "val_loss", "val_ppl", "tasks", "mean_acc_norm", "n_eval_tokens", "degradation"}
    assert res["n_eval_tokens"] == fp["n_eval_tokens"] > 0
    assert res["mean_acc_norm"] == res["tasks"]["tiny_mc"]["acc_norm"]
    deg = res["degradation"]
    assert deg["val_loss"]["before"] == pytest.approx(fp["val_loss"])  # baseline evaluated the same way
    assert deg["val_loss"]["after"] == res["val_loss"] and deg["val_loss"]["drop"] > 0  # W4A4 hurts
    assert deg["val_ppl"]["relative"] == pytest.approx(res["val_ppl"] / fp["val_ppl"] - 1)
    assert "acc_norm" in deg["tasks"]["tiny_mc"] and "mean_acc_norm" in deg


@pytest.mark.parametrize("argv, field", [
    (["--tasks", "no_such_task"], "tasks"),  # indexes the built-in tasks: slowest case
    (["--include-path", "/nonexistent/tasks"], "include_path"),
    (["--max-tokens", "3"], "max_tokens"),
])
def test_eval_cli_bad_input(argv, field, trained_tiny_dir, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["eval", str(trained_tiny_dir), "--out", str(out), *argv]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln.lower()]
    assert len(err) == 1 and field in err[0] and "fix:" in err[0]
    assert not out.exists()


def test_eval_cli_not_a_model(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "model" in capsys.readouterr().err
