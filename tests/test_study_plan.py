"""``study --plan``: 6ND, optimizer-state memory counted against the real optimizers' states, disk, and the
refusal of a budget the corpus cannot supply."""
from __future__ import annotations

import math
import os

import pytest
import torch
import yaml

from hf_optquant.cli import main
from hf_optquant.study.config import load_study_config
from hf_optquant.study.plan import PlanOptions, format_plan, state_floats, study_plan


def _state_values(x) -> int:
    """Floating-point tensor values in a state entry (nested lists/dicts of tensors included)."""
    if torch.is_tensor(x):
        return x.numel() if x.dim() > 0 and x.dtype.is_floating_point else 0
    if isinstance(x, dict):
        return sum(_state_values(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return sum(_state_values(v) for v in x)
    return 0


@pytest.mark.parametrize("name,kw", [("adamw", {}), ("muon", {}), ("scion", {}), ("psgd", {}), ("shampoo", {}),
                                     ("shampoo", {"max_preconditioner_dim": 100}), ("soap", {})])
def test_state_model_counts_what_the_optimizer_keeps(name, kw):
    from hf_optquant.models import build_model
    from hf_optquant.optim import build_optimizer, optimizer_hparams, route_parameters

    torch.manual_seed(0)
    model = build_model("tiny-1", vocab_size=300)
    opt = build_optimizer(name, model, lr=1e-3, weight_decay=0.0, **kw)  # max dim 100: blocked embedding
    for _ in range(2):  # states are created at the first step
        ids = torch.randint(0, 300, (2, 16))
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    hp = optimizer_hparams(name, **kw)
    for group, params in route_parameters(model).items():
        for p in params:
            assert _state_values(opt.state[p]) == state_floats(name, group, tuple(p.shape), hp), (group, p.shape)


def _cfg(tmp_path, **over):
    base = {"name": "p", "output_dir": str(tmp_path / "s"), "optimizers": ["adamw", "soap"],
            "sizes": ["tiny-1", "tiny-2"], "tokens_per_param": 2, "vocab_size": 300, "block_size": 32,
            "batch_size": 8, "eval_every": 4, "max_eval_tokens": 1024, "precisions": ["full"]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**base, **over}))
    return path


def test_plan_figures(tmp_path):
    from hf_optquant.models import build_model

    cfg = load_study_config(_cfg(tmp_path))
    plan = study_plan(cfg, PlanOptions(mfu=0.5, gpu_tflops=100.0))
    assert len(plan["runs"]) == 4
    for r in plan["runs"]:
        model = build_model(r["size"], vocab_size=300)
        n = sum(p.numel() for p in model.parameters())
        steps = math.ceil(2 * n / (8 * 32))
        assert (r["params"], r["steps"], r["tokens"]) == (n, steps, steps * 8 * 32)
        assert r["flops"] == 6 * n * r["tokens"]
        assert r["gpu_hours"] == pytest.approx(6.0 * n * r["tokens"] / (0.5 * 100e12) / 3600, rel=1e-12)
        assert r["weights_grads_bytes"] == 8 * n
        if r["optimizer"] == "adamw":
            assert r["state_bytes"] == 8 * n
        # one checkpoint (weights + state), the final model, a snapshot per evaluation
        assert r["disk_bytes"] == 4 * n + r["state_bytes"] + 4 * n + (steps // 4) * 4 * n
    t = plan["totals"]
    assert t["flops"] == sum(r["flops"] for r in plan["runs"])
    assert t["shard_bytes"] == 2 * (math.ceil(plan["train_tokens_needed"] * 1.01) + 1024)
    text = format_plan(plan)
    assert "adamw-tiny-2-full" in text and "GPU-hours" in text and "token shards" in text


def test_plan_cli_and_refusal(tmp_path, capsys):
    assert main(["study", str(_cfg(tmp_path)), "--plan", "--mfu", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "30% MFU" in out and "soap-tiny-1-full" in out
    assert not (tmp_path / "s").exists()  # the plan runs nothing
    # PTB has ~5M bytes: 1000 tokens/parameter of tiny-2 (~0.2B tokens) cannot be read from it.
    assert main(["study", str(_cfg(tmp_path, tokens_per_param=1000)), "--plan"]) == 2
    err = capsys.readouterr().err.strip()
    assert "tokens_per_param" in err and "at most" in err and len(err.splitlines()) == 1
    assert main(["study", str(_cfg(tmp_path, tokens_per_param=1000, data={"allow_epochs": True})), "--plan"]) == 0
    assert main(["study", str(_cfg(tmp_path)), "--plan", "--mfu", "2"]) == 2


def test_shipped_paper_config_plans_on_a_machine_without_gpus(tmp_path, capsys, monkeypatch):
    """study_paper.yaml asks for bf16 and QuEST's 128-wide Hadamard blocks: it must load (every paper size's
    linears divisible by 128) and plan from a CPU-only login node, writing nothing."""
    from hf_optquant.resources import resource_path

    monkeypatch.chdir(tmp_path)
    cfg = resource_path("trainer_configs", "study_paper.yaml")
    # The suite runs offline (HF_HUB_OFFLINE), where the paper's Hub tasks are refused by every command that
    # evaluates (the battery's `piqa` row); a plan evaluates nothing, so it must not refuse them.
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert main(["study", str(cfg), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "shampoo-1.5B-qat" in out and "GPU-hours" in out
    assert not list(tmp_path.iterdir())
