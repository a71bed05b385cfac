"""QATConfig validation and bad input: one clear line each, nothing changed or written."""
from __future__ import annotations

import pytest
import torch

from hf_optquant.errors import ConfigError
from hf_optquant.models import build_model
from hf_optquant.qat import QATConfig, QATLinear, convert_qat, prepare_qat, qat_modules


def test_roundtrip_and_defaults():
    cfg = QATConfig.from_dict({"quantizer": "rtn", "w_bits": 8, "a_bits": "none", "granularity": "group:32"})
    assert cfg.scheme.a_bits is None and cfg.scheme.granularity == "group:32"
    assert QATConfig.from_dict(cfg.to_dict()) == cfg
    d = QATConfig().to_dict()
    assert d["quantizer"] == "quest" and d["w_bits"] == 4 and d["a_bits"] == 4 and d["hadamard_block"] == 128
    assert d["targets"] == ["auto"]
    # On the paper's (Llama/OLMo-style) model, auto is exactly the paper's named layer list.
    from hf_optquant.qat import LLAMA_TARGETS, find_targets

    model = build_model("tiny-2", vocab_size=300, seed=0)
    assert find_targets(model, QATConfig(hadamard_block=32)).keys() == \
        find_targets(model, QATConfig(hadamard_block=32, targets=list(LLAMA_TARGETS))).keys()


@pytest.mark.parametrize("bad, field", [
    ({"w_bits": 0}, "qat.w_bits"), ({"w_bits": 1}, "qat.w_bits"), ({"a_bits": 17}, "qat.a_bits"),
    ({"w_bits": None, "a_bits": None}, "qat.w_bits"), ({"quantizer": "gptq"}, "qat.quantizer"),
    ({"granularity": "block"}, "qat.granularity"), ({"hadamard_block": 48}, "qat.hadamard_block"),
    ({"targets": []}, "qat.targets"), ({"wbits": 4}, "qat.wbits"),
])
def test_bad_config_one_line(bad, field):
    with pytest.raises(ConfigError) as exc:
        QATConfig.from_dict(bad)
    msg = str(exc.value)
    assert msg.startswith(field) and "fix:" in msg and "\n" not in msg


@pytest.mark.parametrize("cfg, field, text", [
    (QATConfig(quantizer="rtn", granularity="group:48"), "qat.granularity", "does not divide in_features=64"),
    (QATConfig(quantizer="quest", hadamard_block=128), "qat.hadamard_block", "does not divide in_features=64"),
    (QATConfig(targets=["q_proj", "attn.qkv"], hadamard_block=32), "qat.targets", "'attn.qkv' matches no"),
])
def test_bad_model_fit_changes_nothing(cfg, field, text, tmp_path):
    model = build_model("tiny-1", vocab_size=300, seed=0)
    before = [type(m) for m in model.modules()]
    with pytest.raises(ConfigError) as exc:
        prepare_qat(model, cfg)
    assert str(exc.value).startswith(field) and text in str(exc.value) and "\n" not in str(exc.value)
    assert [type(m) for m in model.modules()] == before and not qat_modules(model)
    with pytest.raises(ConfigError, match="no QAT layers"):
        convert_qat(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_targets_patterns_and_enabled_flag():
    model = build_model("tiny-1", vocab_size=300, seed=0)
    prepare_qat(model, QATConfig(quantizer="rtn", targets=["re:.*mlp\\..*", "o_proj"], enabled=False))
    names = sorted(qat_modules(model))
    assert names == ["model.layers.0.mlp.down_proj", "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj",
                     "model.layers.0.self_attn.o_proj"]
    ids = torch.randint(0, 300, (2, 8))
    ref = build_model("tiny-1", vocab_size=300, seed=0)(input_ids=ids).logits
    assert torch.equal(model(input_ids=ids).logits, ref)  # disabled: the float model exactly
    with pytest.raises(ConfigError, match="already prepared"):
        prepare_qat(model, QATConfig(quantizer="rtn"))


def test_convert_refuses_existing_dir_and_activation_only(tmp_path):
    model = prepare_qat(build_model("tiny-1", vocab_size=300, seed=0), QATConfig(quantizer="rtn", w_bits=None))
    with pytest.raises(ConfigError, match="qat.w_bits"):
        convert_qat(model, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    model = prepare_qat(build_model("tiny-1", vocab_size=300, seed=0), QATConfig(quantizer="rtn"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        convert_qat(model, tmp_path / "b")
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["keep.txt"]
    assert isinstance(model.lm_head, QATLinear)
