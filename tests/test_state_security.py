"""A checkpoint never runs code: planted entries in optimizer.pt are refused with one line,
nothing they name is called, and the optimizer is left as it was (issue 12 section 1)."""
from __future__ import annotations

import copy
import functools
import io
import os
import shutil

import pytest
import torch
from pytorch_optimizer.optimizer.utils.preconditioner import PreConditioner

from hf_optquant.cli import main
from hf_optquant.errors import ConfigError
from hf_optquant.models import build_model
from hf_optquant.optim import build_optimizer

V = 64


class Sneaky(PreConditioner):
    """A subclass of an allowlisted class: rebuilding it by name would run its ``__new__``."""

    def __new__(cls, *args, **kwargs):
        open(os.environ["HFOQ_MARKER"], "w").close()
        return super().__new__(cls)


def _payloads(marker: str) -> dict[str, dict]:
    cmd = f"touch {marker}"
    return {
        "os.system": {"__hfoq_enum__": "torch.serialization:os.system", "value": cmd},
        "builtins.eval": {"__hfoq_enum__": "builtins:eval", "value": f"open({marker!r}, 'w')"},
        "torch.hub.load": {"__hfoq_object__": "torch.hub:load", "attrs": {"repo_or_dir": "evil/repo"}},
        "pytorch_optimizer function": {"__hfoq_enum__": "pytorch_optimizer.optimizer.utils.utils:disable_running_stats",
                                       "value": cmd},
        "subclass outside the list": {"__hfoq_object__": f"{__name__}:Sneaky", "attrs": {}},
        "unknown tag": {"__hfoq_import__": "os:system", "value": cmd},
    }


@functools.cache
def _model():
    return build_model("tiny-1", vocab_size=V, seed=0)


def _fresh(name: str):
    return build_optimizer(name, _model())


@functools.cache
def _trained_state(name: str) -> dict:
    """The state_dict of ``name`` after one step, as read back from a file."""
    torch.manual_seed(0)
    model = build_model("tiny-1", vocab_size=V, seed=0)
    opt = build_optimizer(name, model)
    x = torch.randint(0, V, (2, 16), generator=torch.Generator().manual_seed(0))
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    return _through_file(opt.state_dict())


def _through_file(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _plant(sd: dict, where: str, payload: dict) -> dict:
    sd = copy.deepcopy(sd)
    hidden = sd["combined"]["hidden"]
    if where == "enum group value":  # SCION's LMONorm entry
        hidden["param_groups"][0]["norm_type"] = payload
    elif where == "number group value":
        hidden["param_groups"][0]["lr"] = payload
    elif where == "new group key":
        hidden["param_groups"][0]["evil"] = payload
    elif where == "group params":
        hidden["param_groups"][0]["params"] = [payload]
    else:  # per-parameter state
        first = next(iter(hidden["state"]))
        hidden["state"][first]["d"] = payload
    return sd


PLACES = ["enum group value", "number group value", "new group key", "group params", "parameter state"]


@pytest.fixture
def marker(tmp_path, monkeypatch):
    path = tmp_path / "ran"
    monkeypatch.setenv("HFOQ_MARKER", str(path))
    return path


@pytest.mark.parametrize("place", PLACES)
def test_planted_payloads_are_refused_and_nothing_runs(place, marker):
    clean = _trained_state("scion")
    before = copy.deepcopy(clean)
    refused = 0
    for label, payload in _payloads(str(marker)).items():
        target = _fresh("scion")
        lrs = [g["lr"] for g in target.param_groups]
        with pytest.raises(ConfigError) as exc:
            target.load_state_dict(_plant(clean, place, payload))
        msg = str(exc.value)
        assert len(msg.splitlines()) == 1 and msg.startswith("optimizer.pt:") and "fix:" in msg, (label, msg)
        assert not marker.exists(), f"{label} in {place} ran"
        # Refused before any sub-optimizer was touched.
        assert [g["lr"] for g in target.param_groups] == lrs
        assert not any(isinstance(v, dict) and any(str(k).startswith("__hfoq") for k in v)
                       for g in target.param_groups for v in g.values())
        refused += 1
    assert refused == len(_payloads(str(marker)))
    # The clean state still loads, and is unchanged by the attempts.
    target = _fresh("scion")
    target.load_state_dict(clean)
    d = next(iter(target.optimizers["hidden"].state.values()))["d"]
    assert torch.equal(d, before["combined"]["hidden"]["state"][0]["d"])


def test_config_objects_come_from_the_live_optimizer():
    # Kron's schedule function and dtype, SCION's enum: stored as descriptions, never as objects.
    for name, key in (("psgd", "pre_conditioner_update_probability"), ("psgd", "precondition_dtype"),
                      ("scion", "norm_type")):
        sd = _trained_state(name)
        saved = sd["combined"]["hidden"]["param_groups"][0][key]
        assert set(saved) == {"__hfoq_live__"} and isinstance(saved["__hfoq_live__"], str)
        fresh = _fresh(name)
        live = fresh.optimizers["hidden"].param_groups[0][key]
        fresh.load_state_dict(sd)
        assert fresh.optimizers["hidden"].param_groups[0][key] is live


def test_a_changed_enum_is_refused():
    from pytorch_optimizer.optimizer.scion import LMONorm

    sd = _trained_state("scion")
    target = _fresh("scion")
    target.optimizers["hidden"].param_groups[0]["norm_type"] = LMONorm.SIGN
    with pytest.raises(ConfigError, match="norm_type: was .*SPECTRAL"):
        target.load_state_dict(sd)


def test_cli_resume_from_a_planted_checkpoint_exits_nonzero(tmp_path, marker, capsys, tokenizer_dir):
    run = tmp_path / "run"
    common = ["train", "trainer_configs/tiny.yaml", "--model", "tiny-1", "--tokenizer", str(tokenizer_dir),
              "--max_eval_tokens", "2048", "--optimizer",
              "scion", "--max_steps", "2", "--save_steps", "1", "--logging_steps", "1",
              "--output_dir", str(run), "--disable_tqdm", "true", "--save_total_limit", "3"]
    assert main(common) == 0
    # As if killed after checkpoint-1: only the checkpoint is left.
    for p in run.iterdir():
        if p.name not in ("checkpoint-1", "tokenizer_cache"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    opt_file = run / "checkpoint-1" / "optimizer.pt"
    sd = torch.load(opt_file, weights_only=True)
    torch.save(_plant(sd, "enum group value", _payloads(str(marker))["os.system"]), opt_file)
    capsys.readouterr()
    assert main(common) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "optimizer.pt" in err and "Traceback" not in err, err
    assert not marker.exists()
    assert not (run / "run.json").exists()
