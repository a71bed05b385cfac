"""Quantized checkpoints reload with plain transformers in a fresh process and compute what
hf_optquant's own quantized forward computes; W4A4 hurts perplexity, W8A8 barely."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from hf_optquant.cli import main
from hf_optquant.data import calibration_blocks
from hf_optquant.models import load_causal_lm
from hf_optquant.ptq import PTQConfig, quantize_model, save_compressed_checkpoint
from hf_optquant.quant import QuantScheme

# Imports only torch and transformers (compressed-tensors is loaded by transformers itself).
RELOAD = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM
    ids = torch.tensor(json.loads(sys.argv[1]))
    out = {}
    for path in sys.argv[2:]:
        m = AutoModelForCausalLM.from_pretrained(path).eval()
        with torch.no_grad():
            out[path] = {"logits": m(ids).logits.tolist(), "tied": m.config.tie_word_embeddings,
                         "emb_is_head": m.get_input_embeddings().weight is m.get_output_embeddings().weight}
    assert "hf_optquant" not in sys.modules, "the reload must not import hf_optquant"
    print(json.dumps(out))
""")

CASES = {
    # the paper's setting, through the CLI
    "rtn": dict(method="rtn", w_bits=4, a_bits=4, granularity="row"),
    # GPTQ through the Python API, with group scales, act-order and a quantized (untied) LM head
    "gptq": dict(method="gptq", w_bits=4, a_bits=4, granularity="group:32", act_order=True, lm_head=True),
}


@pytest.fixture(scope="module")
def quantized(trained_tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ptq")
    torch.set_num_threads(1)  # same thread count as the subprocess: identical float summation order
    model, tok = load_causal_lm(str(trained_tiny_dir))
    assert main(["ptq", str(trained_tiny_dir), "--out", str(root / "rtn"), "--method", "rtn", "--w-bits", "4",
                 "--a-bits", "4", "--granularity", "row"]) == 0
    cfg = PTQConfig(**CASES["gptq"])
    calib = calibration_blocks(tok, "ptb", 16, 64)
    qmodel, qweights = quantize_model(model, cfg, calibration=calib)
    save_compressed_checkpoint(model, root / "gptq", qweights=qweights, scheme=cfg.scheme,
                               tokenizer=tok, record={"method": "gptq", "source_model": str(trained_tiny_dir),
                                                      "calibration_samples": 16})
    ids = torch.randint(0, len(tok), (2, 32), generator=torch.Generator().manual_seed(1))
    ours = {"gptq": qmodel}
    ours["rtn"] = quantize_model(model, PTQConfig(**CASES["rtn"]))[0]
    with torch.no_grad():
        logits = {k: m(ids).logits for k, m in ours.items()}
        fp = model(ids).logits
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", RELOAD, json.dumps(ids.tolist()), str(root / "rtn"),
                           str(root / "gptq")], capture_output=True, text=True, timeout=600, env=env,
                          cwd=str(root))
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"root": root, "ours": logits, "fp": fp, "theirs": {k: theirs[str(root / k)] for k in CASES},
            "qweights": qweights}


@pytest.mark.parametrize("case", list(CASES))
def test_reload_in_fresh_process_matches_our_forward(quantized, case):
    theirs = torch.tensor(quantized["theirs"][case]["logits"])
    ours = quantized["ours"][case]
    # Same int codes, same float32 scales, same activation grid and op order: equal to float
    # round-off (measured: bit-identical). 1e-5 leaves room for BLAS differences, not for a
    # different grid (a 4-bit rounding flip moves logits by ~1e-2).
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)
    assert (theirs - quantized["fp"]).abs().max() > 1e-2  # and it really is quantized


def test_checkpoint_contents(quantized):
    root = quantized["root"]
    for case in CASES:
        d = root / case
        rec = json.loads((d / "quantization_record.json").read_text())
        cfg = json.loads((d / "config.json").read_text())["quantization_config"]
        assert rec["method"] == case and rec["w_bits"] == 4 and rec["a_bits"] == 4
        assert (d / "tokenizer.json").exists()
        assert cfg["quant_method"] == "compressed-tensors" and cfg["format"] == "pack-quantized"
        acts = cfg["config_groups"]["group_0"]["input_activations"]
        assert acts["strategy"] == "token" and acts["dynamic"] and acts["num_bits"] == 4
        assert not list(root.glob(f".{case}.*"))  # no leftovers of the atomic write
    rtn = json.loads((root / "rtn" / "quantization_record.json").read_text())
    assert rtn["calibration_samples"] == 0 and rtn["source_model"] and rtn["hf_optquant_version"]
    assert "lm_head" not in rtn["quantized_modules"]
    gptq = json.loads((root / "gptq" / "quantization_record.json").read_text())
    assert gptq["lm_head_quantized"] and "lm_head" in quantized["qweights"]
    # a quantized head is untied; the embedding stays full precision
    assert quantized["theirs"]["gptq"]["tied"] is False and not quantized["theirs"]["gptq"]["emb_is_head"]
    assert quantized["theirs"]["rtn"]["tied"] is True


def test_gptq_record_from_cli_has_no_calibration_text(trained_tiny_dir, tmp_path):
    calib = tmp_path / "calib.txt"
    secret = "the zebra quartet plays marimba at midnight"
    calib.write_text("\n".join([secret] * 200))
    out = tmp_path / "g"
    assert main(["ptq", str(trained_tiny_dir), "--out", str(out), "--method", "gptq", "--a-bits", "none",
                 "--granularity", "group:32", "--calibration", str(calib), "--n-calibration", "4",
                 "--seq-len", "32"]) == 0
    rec = json.loads((out / "quantization_record.json").read_text())
    assert rec["calibration_samples"] == 4 and rec["a_bits"] is None
    assert not any(secret in p.read_text(errors="ignore") for p in out.glob("*.json"))


def test_w4a4_hurts_and_w8a8_is_close(trained_tiny_dir):
    from hf_optquant.eval import evaluate_loss

    model, tok = load_causal_lm(str(trained_tiny_dir))
    kw = dict(max_tokens=8192, block_size=64)
    fp = evaluate_loss(model, tok, **kw)["val_ppl"]
    w4 = evaluate_loss(quantize_model(model, PTQConfig(w_bits=4, a_bits=4))[0], tok, **kw)["val_ppl"]
    w8 = evaluate_loss(quantize_model(model, PTQConfig(w_bits=8, a_bits=8))[0], tok, **kw)["val_ppl"]
    # W4A4 must cost something measurable (0.8% perplexity on this fixture on one CPU, >1% on another: the
    # 200-step fixture's weights depend on the CPU's GEMM rounding), and W8A8 far less than W4A4.
    assert w4 > fp * 1.004
    assert abs(w8 - fp) < 0.01 * fp
    assert abs(w8 - fp) < (w4 - fp) / 5


def test_flat_per_row_scales_save_the_same_checkpoint(trained_tiny_dir, tmp_path):
    from safetensors.torch import load_file

    model, _ = load_causal_lm(str(trained_tiny_dir))
    _, qweights = quantize_model(model, PTQConfig(w_bits=4, a_bits=None))
    flat = {n: (q, s.flatten()) for n, (q, s) in qweights.items()}  # (rows,) instead of (rows, 1)
    for name, qw in (("2d", qweights), ("1d", flat)):
        save_compressed_checkpoint(model, tmp_path / name, qweights=qw, scheme=QuantScheme(w_bits=4, a_bits=None),
                                   record={"method": "rtn"})
    a, b = load_file(tmp_path / "2d" / "model.safetensors"), load_file(tmp_path / "1d" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
