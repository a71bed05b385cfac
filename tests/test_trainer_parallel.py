"""Sharded setups the trainer cannot run as asked are refused before anything is written; the FSDP2 configs
in trainer_configs/ pass the same checks on an accelerator."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from hf_optquant.cli import main
from hf_optquant.errors import ConfigError
from hf_optquant.trainer.parallel import check_parallelism

CONFIGS = Path(__file__).parents[1] / "trainer_configs"
FSDP_ENV = ("ACCELERATE_USE_FSDP", "FSDP_VERSION", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_CPU")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for k in FSDP_ENV:
        monkeypatch.delenv(k, raising=False)


def _args(**kw):
    base = {"fsdp": [], "fsdp_config": {}, "deepspeed": None, "optimizer": "muon", "use_cpu": False}
    return SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize("opt", ["adamw", "muon", "psgd", "scion", "shampoo", "soap"])
def test_fsdp2_accepted_on_an_accelerator(opt):
    check_parallelism(_args(optimizer=opt, fsdp=["full_shard"], fsdp_config={"version": 2}), on_cpu=False)


@pytest.mark.parametrize("kw,env,field,on_cpu", [
    ({"fsdp": ["full_shard"], "fsdp_config": {"version": 2}}, {}, "fsdp", True),
    ({"fsdp": ["full_shard"], "fsdp_config": {"version": 1}}, {}, "fsdp_config", False),
    ({"fsdp": ["full_shard"], "fsdp_config": {"version": 2, "xla": True}}, {}, "fsdp_config", False),
    ({}, {"ACCELERATE_USE_FSDP": "true"}, "fsdp_config", False),  # accelerate's default FSDP version is 1
    ({}, {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, "fsdp", True),
    ({"deepspeed": {"zero_optimization": {"stage": 2}}}, {}, "deepspeed", False),
    ({"optimizer": "adamw", "fsdp": ["full_shard"], "deepspeed": "ds.json"}, {}, "fsdp", False),
    ({}, {"ACCELERATE_USE_DEEPSPEED": "true"}, "deepspeed", False),
])
def test_unsupported_setups_are_refused(monkeypatch, kw, env, field, on_cpu):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as exc:
        check_parallelism(_args(**kw), on_cpu=on_cpu)
    assert exc.value.field == field


def test_accelerate_fsdp2_env_accepted(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    check_parallelism(_args(optimizer="soap"), on_cpu=False)
    check_parallelism(_args(optimizer="adamw", deepspeed=None), on_cpu=False)


def test_fsdp2_yaml_parses_to_fsdp2_arguments_and_cpu_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    # On this CPU machine the FSDP2 YAML is refused as one line, exit 2, nothing written.
    assert main(["train", str(CONFIGS / "tiny_fsdp2.yaml"), "--output_dir", str(out), "--use_cpu", "true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fsdp" in err[0] and "DDP" in err[0], err
    assert not out.exists()


def test_deepspeed_with_a_matrix_optimizer_is_refused_by_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", str(CONFIGS / "tiny.yaml"), "--optimizer", "shampoo", "--output_dir", str(out),
               "--deepspeed", '{"zero_optimization": {"stage": 2}}'])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deepspeed" in err[0], err
    assert not out.exists()


def test_accelerate_fsdp2_config_is_fsdp2_with_sharded_checkpoints():
    import yaml

    cfg = yaml.safe_load((CONFIGS / "accelerate_fsdp2.yaml").read_text())
    assert cfg["distributed_type"] == "FSDP" and cfg["fsdp_config"]["fsdp_version"] == 2
    assert cfg["fsdp_config"]["fsdp_state_dict_type"] == "SHARDED_STATE_DICT" and cfg["use_cpu"] is False
    # accelerate reads it as an FSDP2 plugin.
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(CONFIGS / "accelerate_fsdp2.yaml"))
    assert loaded.fsdp_config["fsdp_version"] == 2 and str(loaded.distributed_type).endswith("FSDP")
