"""Cards, schema and dry runs (no network): what a publish would upload, checked file by file."""
from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest
import torch
from hub_fixtures import TOKEN, hub_env, result_rows, write_eval, write_run_dir, write_study_dir  # noqa: F401

from hf_optquant.cli import main
from hf_optquant.errors import ConfigError
from hf_optquant.hub import scaling_section
from hf_optquant.paper import PAPER_RHO
from hf_optquant.results import RESULTS_SCHEMA, merge_results, normalize_results, schema_markdown


@pytest.fixture
def model_dir(tmp_path):
    """A minimal saved model (config.json + safetensors): cards do not need a trained one."""
    from safetensors.torch import save_file

    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "olmo2", "num_hidden_layers": 2, "hidden_size": 8,
                                               "num_attention_heads": 2, "vocab_size": 16}))
    save_file({"model.embed_tokens.weight": torch.zeros(16, 8), "model.layers.0.w": torch.zeros(8, 8)},
              str(d / "model.safetensors"))
    return d


def _card(path):
    from huggingface_hub import ModelCard

    return ModelCard((path / "README.md").read_text())


def test_schema_normalizes_types_and_rejects_bad_input():
    rows = result_rows("s", ["a", "b"], seed=0)
    df = normalize_results(pd.DataFrame(rows))
    assert list(df.columns) == [c.name for c in RESULTS_SCHEMA]
    assert str(df["w_bits"].dtype) == "Int64" and str(df["val_loss"].dtype) == "Float64"
    assert df["acc_norm_piqa"].isna().all()  # missing optional column -> nulls
    with pytest.raises(ConfigError, match="unknown column"):
        normalize_results(pd.DataFrame(rows).assign(surprise=1))
    with pytest.raises(ConfigError, match="duplicate run ids"):
        normalize_results(pd.DataFrame(rows + rows[:1]))
    with pytest.raises(ConfigError, match=r"results\.w_bits"):
        normalize_results(pd.DataFrame(rows).assign(w_bits=["four", "4"]))
    with pytest.raises(ConfigError, match=r"results\.optimizer: has missing"):
        normalize_results(pd.DataFrame(rows).assign(optimizer=[None, "adamw"]))
    table = schema_markdown()
    assert all(f"`{c.name}`" in table for c in RESULTS_SCHEMA)


def test_merge_replaces_same_run_id_and_keeps_the_rest():
    old = pd.DataFrame(result_rows("s1", ["a", "b", "c"], seed=1))
    new = pd.DataFrame(result_rows("s2", ["c", "d"], seed=2))
    merged = merge_results(old, new)
    assert list(merged["run_id"]) == ["a", "b", "c", "d"]
    assert merged.set_index("run_id").loc["c", "study"] == "s2"
    assert merged.set_index("run_id").loc["a", "val_loss"] == pytest.approx(old.set_index("run_id").loc["a",
                                                                                                        "val_loss"])
    assert merge_results(None, new)["run_id"].tolist() == ["c", "d"]


def test_run_card_dry_run_has_everything_and_no_token(hub_env, model_dir, tmp_path, capsys):
    run = write_run_dir(model_dir, tmp_path / "run")
    ev = write_eval(run, val_loss=4.5, accs={"piqa": 0.6, "hellaswag": 0.3})
    out = tmp_path / "dry"
    assert main(["publish", str(run), "--repo-id", "me/tiny-run", "--dry-run", str(out)]) == 0
    printed = capsys.readouterr()
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == {"README.md", "config.json", "model.safetensors", "run.json", "eval.json"}
    assert "dry run" in printed.out and TOKEN not in printed.out + printed.err
    for p in out.rglob("*"):
        if p.is_file():
            assert TOKEN.encode() not in p.read_bytes(), p
    card = _card(out)
    text = (out / "README.md").read_text()
    assert "More information needed" not in text
    assert {"hf-optquant", "adamw", "full-precision"} <= set(card.data.tags)
    got = {(r.dataset_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert got[("ptb-text-only/ptb_text_only", "loss")] == ev["val_loss"]
    assert got[("ybisk/piqa", "acc_norm")] == ev["tasks"]["piqa"]["acc_norm"]
    assert got[("Rowan/hellaswag", "acc")] == ev["tasks"]["hellaswag"]["acc"]
    assert not any(k[1].endswith("stderr") for k in got)
    assert "2509.23500" in text and "AutoModelForCausalLM.from_pretrained(\"me/tiny-run\")" in text
    assert "no parent to compare" in text


def test_checkpoint_card_shows_degradation_and_quant_tags(hub_env, model_dir, tmp_path):
    from hf_optquant.hub import build_model_bundle, detect_source

    run = write_run_dir(model_dir, tmp_path / "run", optimizer="shampoo")
    base = write_eval(run, val_loss=4.0, accs={"piqa": 0.6})
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for f in ("config.json", "model.safetensors"):
        (ckpt / f).write_bytes((model_dir / f).read_bytes())
    (ckpt / "quantization_record.json").write_text(json.dumps(
        {"method": "gptq", "w_bits": 4, "a_bits": None, "granularity": "group:32", "calibration_samples": 128,
         "source_model": str(run), "hf_optquant_version": "0.1.0"}))
    write_eval(ckpt, val_loss=4.4, accs={"piqa": 0.5}, baseline=run, base=base)
    bundle = build_model_bundle(detect_source(ckpt), "me/ckpt")
    text = bundle.read("README.md").decode()
    from huggingface_hub import ModelCard

    card = ModelCard(text)
    assert {"hf-optquant", "shampoo", "gptq", "w4a16", "quantized"} <= set(card.data.tags)
    assert "| validation loss | 4 | 4.4 | 0.4 | +10.00% |" in text
    assert "| mean zero-shot acc_norm | 0.6 | 0.5 | -0.1 | -16.67% |" in text
    assert "shampoo" in text and str(tmp_path) not in text  # parent named, local path not leaked
    assert "More information needed" not in text
    assert json.loads(bundle.read("parent_run.json"))["config"]["hub_token"] == "<redacted>"
    for name in ("eval.json", "quantization_record.json", "parent_run.json"):  # the records as uploaded too
        assert str(tmp_path) not in bundle.read(name).decode(), name
    assert json.loads(bundle.read("quantization_record.json"))["source_model"] == "run"
    from hf_optquant.hub.sources import scrub_record

    assert scrub_record({"source_model": "org/model", "p": ["~/x/y", "C:\\u\\m"]}) == {"source_model": "org/model",
                                                                                   "p": ["y", "m"]}


def test_scaling_section_puts_rho_beside_the_paper(tmp_path):
    study = write_study_dir(tmp_path / "s", "s", result_rows("s", ["a"], seed=0))
    fit = json.loads((study / "fits" / "scaling.json").read_text())
    text = scaling_section({"studies/s/fits/scaling.json": fit})
    for opt, v in fit.items():
        rho = v["params"]["rho"]["qat"]
        assert f"| {opt} | {rho:.4g} [0.75, 0.9] | {PAPER_RHO[opt]} |" in text
        assert f"{v['params']['A']:.4g} [{v['ci']['A'][0]:.4g}, {v['ci']['A'][1]:.4g}]" in text
    with pytest.raises(ConfigError, match="bad.json"):
        scaling_section({"bad.json": {"adamw": {"no_params": 1}}})
    assert "No scaling fits" in scaling_section({})


def test_study_dry_run_writes_parquet_card_fits_report(hub_env, tmp_path, capsys):
    rows = result_rows("s1", ["r1", "r2", "r3"], seed=3)
    study = write_study_dir(tmp_path / "study", "s1", rows)
    shutil.copy(study / "fits" / "scaling.png", study / "loss_curves.png")  # a report figure
    out = tmp_path / "dry"
    assert main(["publish", str(study), "--repo-id", "me/results", "--dry-run", str(out)]) == 0
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == {"README.md", "data/results.parquet", "studies/s1/report.md", "studies/s1/fits/scaling.json",
                     "studies/s1/fits/scaling.png", "studies/s1/loss_curves.png"}
    df = pd.read_parquet(out / "data/results.parquet")
    assert df["run_id"].tolist() == ["r1", "r2", "r3"]
    assert df["val_loss"].tolist() == pytest.approx([r["val_loss"] for r in rows])
    assert all(math.isclose(a, b) for a, b in zip(df["val_ppl"], [r["val_ppl"] for r in rows]))
    text = (out / "README.md").read_text()
    assert "More information needed" not in text and schema_markdown() in text
    assert "data/results.parquet" in text and "studies/s1/report.md" in text
    assert "](studies/s1/fits/scaling.png)" in text and "100 * df.delta_val_loss" in text


@pytest.mark.parametrize("argv, field", [
    (["--repo-id", "a/b/c"], "repo_id"),
    (["--repo-id", "me/x", "--endpoint", "ftp://example"], "endpoint"),
])
def test_bad_arguments_are_one_line(hub_env, tmp_path, capsys, argv, field, model_dir):
    run = write_run_dir(model_dir, tmp_path / "run")
    assert main(["publish", str(run), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"hf-optquant publish: error: {field}:")


def test_unknown_dir_and_existing_dry_run_dir(hub_env, tmp_path, capsys, model_dir):
    assert main(["publish", str(model_dir), "--repo-id", "me/x", "--dry-run", str(tmp_path / "o")]) == 2
    assert "run.json, quantization_record.json or results.parquet" in capsys.readouterr().err
    run = write_run_dir(model_dir, tmp_path / "run")
    (tmp_path / "taken").mkdir()
    assert main(["publish", str(run), "--repo-id", "me/x", "--dry-run", str(tmp_path / "taken")]) == 2
    assert "dry_run: " in capsys.readouterr().err
    assert list((tmp_path / "taken").iterdir()) == []


def test_three_cards_three_functions():
    from hf_optquant.hub import checkpoint_card, full_precision_card, qat_card

    config = {"model_type": "olmo2", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2,
              "vocab_size": 512}
    run = {"optimizer": "muon", "model_size": "tiny-2", "n_params": 1000, "tokens_seen": 20000, "global_step": 5,
           "versions": {"torch": "2.13"}}
    qat = {"quantizer": "quest", "w_bits": 4, "a_bits": 4, "granularity": "row"}
    quant = {"method": "rtn", "w_bits": 4, "a_bits": None, "granularity": "row", "hf_optquant_version": "0.1.0"}
    common = dict(repo_id="me/x", config=config, eval_json=None, has_tokenizer=False)
    fp = str(full_precision_card(run=run, **common))
    q = str(qat_card(run={**run, "qat": qat}, **common))
    ck = str(checkpoint_card(run=run, quant=quant, **common))
    assert "muon-trained full-precision model" in fp and "full-precision" in fp and "Quantization-aware" not in fp
    assert "there is no parent to compare with" in fp
    assert "muon-trained QAT model" in q and "w4a4" in q and "| `quantizer` | `quest` |" in q
    assert "muon-trained rtn W4A16 checkpoint" in ck and "compressed-tensors" in ck and "| `method` | `rtn` |" in ck
    assert "Post-training quantization" in ck and "Post-training quantization" not in q + fp
    assert all("{{" not in c and "More information needed" not in c for c in (fp, q, ck))
