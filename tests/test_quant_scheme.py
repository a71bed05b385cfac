"""QuantScheme: one scheme type, one-to-one with compressed-tensors' QuantizationScheme, composed by the PTQ
and QAT configs; one bit-width parser and one target matcher."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from hf_optquant.errors import ConfigError
from hf_optquant.ptq import PTQConfig
from hf_optquant.qat import QATConfig
from hf_optquant.quant import QuantScheme, matches_target, parse_bits
from hf_optquant.quant.arguments import add_scheme_arguments, scheme_kwargs

SCHEMES = [
    QuantScheme(),
    QuantScheme(w_bits=8, a_bits=8),
    QuantScheme(w_bits=3, a_bits=None, granularity="group:32", targets=("model.layers.0.mlp.up_proj",)),
    QuantScheme(w_bits=4, a_bits=4, granularity="tensor", targets=("a", "b")),
    QuantScheme(w_bits=4, a_bits=4, symmetric=False),  # QuEST's midrise grid
    QuantScheme(w_bits=4, a_bits=None, format="int-quantized"),  # GPT-2 as GPTBigCode: not packable
    QuantScheme(w_bits=None, a_bits=6),  # activations only (QAT may train so; not exportable)
]


@pytest.mark.parametrize("scheme", SCHEMES, ids=range(len(SCHEMES)))
def test_round_trip_through_compressed_tensors(scheme):
    from compressed_tensors.quantization import QuantizationScheme

    ct = scheme.to_compressed_tensors()
    assert isinstance(ct, QuantizationScheme)
    assert QuantScheme.from_compressed_tensors(ct) == scheme
    # ... and through the JSON a checkpoint's config.json holds
    again = QuantizationScheme.model_validate(json.loads(ct.model_dump_json()))
    assert QuantScheme.from_compressed_tensors(again) == scheme


def test_compressed_tensors_fields_are_the_grid_of_hf_optquant_quant_rtn():
    ct = QuantScheme(w_bits=4, a_bits=8, granularity="group:64", targets=("x",)).to_compressed_tensors()
    w, a = ct.weights, ct.input_activations
    assert (w.num_bits, w.type, w.symmetric, w.strategy, w.group_size, w.dynamic) == (4, "int", True, "group", 64, False)
    assert (a.num_bits, a.type, a.symmetric, a.strategy, a.dynamic) == (8, "int", True, "token", True)
    assert ct.targets == ["x"] and ct.format == "pack-quantized"
    mid = QuantScheme(symmetric=False).to_compressed_tensors().weights
    assert mid.symmetric is False and mid.zp_dtype == torch.float32 and mid.strategy == "channel"
    assert QuantScheme(w_bits=8, a_bits=8).storage_format == "int-quantized"
    assert QuantScheme(symmetric=False).zero_point == -0.5


def test_from_compressed_tensors_refuses_what_hf_optquant_cannot_compute():
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    fp8 = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(num_bits=8, type="float"))
    static = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(num_bits=4),
                                input_activations=QuantizationArgs(num_bits=8, strategy="tensor"))
    for ct in (fp8, static):
        with pytest.raises(ConfigError, match="quantization_config"):
            QuantScheme.from_compressed_tensors(ct)


def test_checkpoint_quantization_config_is_the_scheme(tmp_path):
    from compressed_tensors.quantization import QuantizationScheme

    from hf_optquant.models import build_model
    from hf_optquant.ptq import quantize_model, save_compressed_checkpoint

    torch.manual_seed(0)
    model = build_model("tiny-1", vocab_size=64)
    cfg = PTQConfig(w_bits=3, a_bits=8, granularity="group:32", targets=("q_proj", "re:.*down_proj"))
    _, qweights = quantize_model(model, cfg)
    assert sorted(qweights) == sorted(n for n, _ in model.named_modules()
                                      if n.endswith(("q_proj", "down_proj")))
    out = save_compressed_checkpoint(model, tmp_path / "q", qweights=qweights, scheme=cfg.scheme, record={})
    group = json.loads((out / "config.json").read_text())["quantization_config"]["config_groups"]["group_0"]
    stored = QuantScheme.from_compressed_tensors(QuantizationScheme.model_validate(group))
    assert stored == cfg.scheme.replace(targets=tuple(sorted(qweights)))


@pytest.mark.parametrize("value,bits", [(4, 4), ("8", 8), (" 2 ", 2), (None, None), ("none", None), ("null", None),
                                        ("16", None)])
def test_one_bit_parser(value, bits):
    assert parse_bits(value, "w_bits") == bits


@pytest.mark.parametrize("value", [1, 9, 0, "x", 4.0, True, "4bit"])
def test_one_bit_parser_refuses(value):
    with pytest.raises(ConfigError, match="w_bits"):
        parse_bits(value, "w_bits")


def test_bit_ranges_are_stated_once_each():
    # 2-8 for the scheme (QAT trains any of them); an exported checkpoint's activations: 4, 8 or none.
    assert QATConfig(a_bits=3).scheme.a_bits == 3
    with pytest.raises(ConfigError, match=r"^a_bits: 3 bits"):
        PTQConfig(a_bits=3)
    with pytest.raises(ConfigError, match=r"^w_bits: is none"):
        PTQConfig(w_bits=None)
    with pytest.raises(ConfigError, match=r"^qat\.a_bits"):
        QATConfig(a_bits=9)


@pytest.mark.parametrize("pattern,name,hit", [
    ("q_proj", "model.layers.0.self_attn.q_proj", True), ("q_proj", "q_proj", True),
    ("proj", "model.layers.0.self_attn.q_proj", False), ("mlp.down_proj", "model.layers.1.mlp.down_proj", True),
    ("re:.*\\.[qk]_proj", "model.layers.0.self_attn.k_proj", True), ("re:layers", "model.layers.0.q_proj", False),
])
def test_one_target_matcher(pattern, name, hit):
    assert matches_target(pattern, name) is hit


def test_ptq_and_qat_match_targets_the_same_way():
    from hf_optquant.models import build_model
    from hf_optquant.ptq import target_linears
    from hf_optquant.qat import find_targets

    model = build_model("tiny-1", vocab_size=64)
    pats = ("mlp.down_proj", "re:.*\\.[qk]_proj")
    ptq = set(target_linears(model, targets=pats))
    qat = set(find_targets(model, QATConfig(targets=list(pats), hadamard_block=32)))
    assert ptq == qat and len(ptq) == 3 * len(model.model.layers)


def test_configs_compose_the_scheme_and_keep_their_flat_keys():
    p = PTQConfig.from_dict({"method": "gptq", "w_bits": "3", "a_bits": "none", "granularity": "GROUP:16"})
    assert p.scheme == QuantScheme(w_bits=3, a_bits=None, granularity="group:16")
    assert p.to_dict() == {"method": "gptq", "w_bits": 3, "a_bits": None, "granularity": "group:16", "targets": [],
                           "lm_head": False, "damp": 0.01, "block_size": 128, "act_order": True}
    assert PTQConfig.from_dict(p.to_dict()) == p and p.tag == "gptq-w3a16-group16"
    assert PTQConfig(scheme=QuantScheme(w_bits=3, a_bits=None, granularity="group:16"), method="gptq") == p
    q = QATConfig(quantizer="rtn", w_bits=8)
    assert q.scheme == QuantScheme(w_bits=8, targets=("auto",))  # QAT's default targets kept
    assert list(q.to_dict()) == ["quantizer", "w_bits", "a_bits", "granularity", "hadamard_block", "targets",
                                 "enabled"]  # run.json's key order
    with pytest.raises(ConfigError, match=r"^ptq\.wbits: unknown key.*w_bits"):
        PTQConfig.from_dict({"wbits": 4}, prefix="ptq.")


def test_cli_flags_are_generated_from_the_scheme():
    p = argparse.ArgumentParser()
    add_scheme_arguments(p)
    flags = {a.option_strings[0] for a in p._actions if a.option_strings} - {"-h"}
    assert flags == {"--w-bits", "--a-bits", "--granularity", "--targets"}
    args = p.parse_args(["--a-bits", "none", "--targets", "q_proj,mlp.down_proj"])
    assert scheme_kwargs(args) == {"a_bits": None, "targets": ("q_proj", "mlp.down_proj")}
    assert PTQConfig(**scheme_kwargs(p.parse_args([]))) == PTQConfig()  # unset flags: the config's defaults


def test_run_json_qat_entry_is_written_once_and_read_back_once():
    from hf_optquant.qat import qat_record, read_qat_record

    cfg = QATConfig(quantizer="rtn", w_bits=3, a_bits=None, granularity="group:32", targets=["q_proj"])
    rec = {"optimizer": "adamw", "qat": qat_record(cfg)}
    assert json.loads(json.dumps(rec))["qat"] == cfg.to_dict() and read_qat_record(rec) == cfg
    assert qat_record(None) is None and read_qat_record({"qat": None}) is None
    with pytest.raises(ConfigError, match=r"^run\.json: qat\.w_bits"):
        read_qat_record({"qat": {**cfg.to_dict(), "w_bits": 1}})


def test_a_study_recorded_before_ptq_settings_were_ptq_configs_still_matches(tmp_path):
    from hf_optquant.study.config import StudyConfig
    from hf_optquant.study.guard import changed_fields, config_record

    kw = dict(output_dir=str(tmp_path), precisions=["full"])
    rec = config_record(StudyConfig(**kw, ptq=[{"method": "rtn"}, {"method": "gptq"}]))
    old = {**rec, "ptq": [{k: p[k] for k in ("method", "w_bits", "a_bits", "granularity")} for p in rec["ptq"]]}
    assert changed_fields(old, rec) == {}  # the keys added since count at PTQConfig's defaults
    new = config_record(StudyConfig(**kw, ptq=[{"method": "rtn"}, {"method": "gptq", "damp": 0.1}]))
    assert changed_fields(old, new) == {"ptq[1].damp": (0.01, 0.1)}
