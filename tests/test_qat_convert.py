"""prepare/convert: tying, state_dict keys, parity with the checkpoint reloaded by plain transformers, peft."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoModelForCausalLM

from hf_optquant.errors import ConfigError
from hf_optquant.qat import (
    QATConfig,
    QATLinear,
    block_hadamard,
    convert_qat,
    deployed_qweights,
    load_quest,
    prepare_qat,
    qat_modules,
    strip_qat,
)
from hf_optquant.quant import dequantize_rtn

# Reloads every checkpoint in a fresh interpreter that never imports hf_optquant, so only
# transformers + compressed-tensors decide what the checkpoint computes.
_RELOAD = textwrap.dedent("""
    import sys, torch
    from transformers import AutoModelForCausalLM
    ids = torch.load(sys.argv[1])
    for d in sys.argv[2:]:
        m = AutoModelForCausalLM.from_pretrained(d).eval()
        with torch.no_grad():
            torch.save(m(input_ids=ids).logits, d + "/reloaded_logits.pt")
    assert not any(k.startswith("hf_optquant") for k in sys.modules)
""")


def _reload_logits(tmp_path, ids, dirs):
    torch.save(ids, tmp_path / "ids.pt")
    r = subprocess.run([sys.executable, "-c", _RELOAD, str(tmp_path / "ids.pt"), *map(str, dirs)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return [torch.load(f"{d}/reloaded_logits.pt") for d in dirs]


@pytest.fixture(scope="module")
def ids(lm_data):
    return lm_data[1].blocks[:4, :48]


def _model(trained_tiny_dir):
    return AutoModelForCausalLM.from_pretrained(trained_tiny_dir).eval()


def test_prepare_keeps_tying_keys_and_parameters(trained_tiny_dir):
    model = _model(trained_tiny_dir)
    keys = list(model.state_dict())
    params = {id(p) for p in model.parameters()}
    prepare_qat(model, QATConfig(quantizer="quest", hadamard_block=64))
    mods = qat_modules(model)
    assert len(mods) == 7 * 2 + 1 and all(isinstance(m, QATLinear) for m in mods.values())
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert list(model.state_dict()) == keys
    assert {id(p) for p in model.parameters()} == params
    strip_qat(model)
    assert not qat_modules(model) and model.lm_head.weight is model.model.embed_tokens.weight


def test_parity_with_checkpoint_reloaded_by_plain_transformers(trained_tiny_dir, tokenizer, tmp_path, ids):
    """rtn: the checkpoint stores exactly the training grid, so the reloaded logits equal the
    fake-quant logits up to float32 round-off (atol 1e-5; observed: bit-identical), for row and
    group scales. quest ``folded`` (the rotation-free form): the reloaded logits equal an
    in-process model with the deployed weights and per-token activation RTN (atol 1e-5), and
    the deployed model stays a usable LM."""
    ref, dirs = {}, []
    for name, cfg in {"rtn_row": QATConfig(quantizer="rtn"),
                      "rtn_group": QATConfig(quantizer="rtn", granularity="group:32", a_bits=8),
                      "quest": QATConfig(quantizer="quest", hadamard_block=64)}.items():
        model = prepare_qat(_model(trained_tiny_dir), cfg)
        with torch.no_grad():
            ref[name] = model(input_ids=ids).logits
        out = convert_qat(model, tmp_path / name, tokenizer=tokenizer, quest_form="folded")
        assert isinstance(model.lm_head, QATLinear)  # the trained model is left as it was
        rec = json.loads((out / "quantization_record.json").read_text())
        assert rec["method"] == f"{cfg.quantizer}-qat" and rec["qat"] == cfg.to_dict()
        assert (out / "tokenizer_config.json").exists()
        dirs.append(out)
        if name == "quest":
            # The deployed form computed in-process: dequantized shared-grid weights, untied head,
            # per-token RTN activations (compressed-tensors' dynamic scheme).
            qweights, _ = deployed_qweights(model, "folded")
            dep = strip_qat(_model(trained_tiny_dir))
            dep.lm_head.weight = torch.nn.Parameter(dep.lm_head.weight.detach().clone())
            mods = dict(dep.named_modules())
            for n, (q, s) in qweights.items():
                mods[n].weight.data = dequantize_rtn(q.float(), s.float(), "row")
            prepare_qat(dep, QATConfig(quantizer="rtn", w_bits=None, a_bits=4))
            with torch.no_grad():
                ref["quest_deployed"] = dep(input_ids=ids).logits
                float_logits = strip_qat(_model(trained_tiny_dir))(input_ids=ids).logits
    got = dict(zip(["rtn_row", "rtn_group", "quest"], _reload_logits(tmp_path, ids, dirs)))
    torch.testing.assert_close(got["rtn_row"], ref["rtn_row"], atol=1e-5, rtol=0)
    torch.testing.assert_close(got["rtn_group"], ref["rtn_group"], atol=1e-5, rtol=0)
    torch.testing.assert_close(got["quest"], ref["quest_deployed"], atol=1e-5, rtol=0)

    def loss(logits):
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).item()

    # Deployed QuEST model: far better than chance, and its gap to QuEST's own forward is reported.
    assert loss(got["quest"]) < 0.8 * torch.log(torch.tensor(float(len(tokenizer)))).item()
    print(f"float {loss(float_logits):.3f} quest-fake-quant {loss(ref['quest']):.3f} quest-deployed {loss(got['quest']):.3f}")


def _ref_quest_rows(x: torch.Tensor, bits: int, c: float) -> torch.Tensor:
    """Per-row QuEST levels in float64 by brute force (nearest of linspace(-s, s, 2^b))."""
    s = c * x.square().mean(-1, keepdim=True).sqrt() + 1e-8
    levels = torch.linspace(-1, 1, 2**bits, dtype=torch.float64) * s
    return levels.gather(-1, (x.unsqueeze(-1) - levels.unsqueeze(1)).abs().argmin(-1))


def test_quest_checkpoint_keeps_the_rotation_and_load_quest_is_exact(trained_tiny_dir, tokenizer, tmp_path, ids):
    """The quest checkpoint stores QuEST's own weights in the rotated basis (4-bit codes, zero point
    -1/2) and the online Hadamard in transform_config; load_quest reproduces the QAT forward."""
    from safetensors.torch import load_file

    from hf_optquant.qat import gaussian_optimal_clip

    model = prepare_qat(_model(trained_tiny_dir), QATConfig(quantizer="quest", hadamard_block=64))
    with torch.no_grad():
        qat_logits = model(input_ids=ids).logits
    out = convert_qat(model, tmp_path / "quest", tokenizer=tokenizer)
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    group = cfg["transform_config"]["config_groups"]["quest_hadamard"]
    names = sorted(qat_modules(model))
    assert group["type"] == "hadamard" and group["head_dim"] == 64
    assert {a["location"]: sorted(a["targets"]) for a in group["apply"]} == {"input": names, "weight_input": names}
    sd = load_file(str(out / "model.safetensors"))
    codes = sd["model.layers.1.mlp.down_proj.weight"]
    assert codes.dtype == torch.int8 and codes.min() >= -8 and codes.max() <= 7 and len(codes.unique()) == 16
    assert torch.equal(sd["model.layers.1.mlp.down_proj.weight_zero_point"],
                       torch.full_like(sd["model.layers.1.mlp.down_proj.weight_zero_point"], -0.5))
    # Stored weights = QuEST's Q(W H), checked against a float64 brute-force reference.
    w = model.model.layers[1].mlp.down_proj.weight.detach().double()
    ref_q = _ref_quest_rows(block_hadamard(w, 64), 4, gaussian_optimal_clip(4))
    step = sd["model.layers.1.mlp.down_proj.weight_scale"].double()
    err = ((codes.double() + 0.5) * step - ref_q).abs()
    # float32 vs float64 RMS may flip an element lying within ~1e-7 of a rounding boundary.
    assert (err > 1e-6).float().mean() < 1e-3 and (err <= step * 1.001).all()

    deployed = load_quest(out).eval()
    with torch.no_grad():
        got = deployed(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(out).eval()(input_ids=ids).logits
        ct = load_quest(out, activations="compressed-tensors").eval()(input_ids=ids).logits
    torch.testing.assert_close(got, qat_logits, atol=1e-5, rtol=0)

    def rel(a):
        return ((a - qat_logits).norm() / qat_logits.norm()).item()

    # Plain transformers ignores transform_config (rotated weights meet unrotated inputs); with
    # compressed-tensors' transforms applied only the activation grid (absmax vs RMS-clip) differs.
    assert rel(plain) > 0.1 and rel(ct) < rel(plain), (rel(plain), rel(ct))
    with pytest.raises(ConfigError, match="quest-qat"):
        load_quest(_rtn_checkpoint(trained_tiny_dir, tmp_path))


def _rtn_checkpoint(trained_tiny_dir, tmp_path):
    return convert_qat(prepare_qat(_model(trained_tiny_dir), QATConfig(quantizer="rtn", a_bits=None)), tmp_path / "rtn")


def test_embedding_stays_raw_float_in_the_checkpoint(trained_tiny_dir, tmp_path):
    model = prepare_qat(_model(trained_tiny_dir), QATConfig(quantizer="rtn", a_bits=None))
    emb = model.model.embed_tokens.weight.detach().clone()
    out = convert_qat(model, tmp_path / "c")
    from safetensors.torch import load_file

    sd = load_file(str(out / "model.safetensors"))
    assert torch.equal(sd["model.embed_tokens.weight"], emb)  # the lookup uses the raw tied weight
    assert "lm_head.weight_scale" in sd  # the head is quantized (untied in the checkpoint)


def test_transformers_ignores_compressed_tensors_transforms(trained_tiny_dir, tmp_path):
    """Plain transformers (5.24) drops a transform_config at load time, which is why QuEST
    checkpoints need load_quest. If this starts failing, transformers applies transforms:
    update docs/qat.md (plain from_pretrained would then rotate the inputs)."""
    from compressed_tensors.transform import (
        TransformArgs,
        TransformConfig,
        TransformScheme,
    )

    model = prepare_qat(_model(trained_tiny_dir), QATConfig(quantizer="rtn", a_bits=None))
    out = convert_qat(model, tmp_path / "c")
    cfg = json.loads((out / "config.json").read_text())
    tc = TransformConfig(config_groups={"u": TransformScheme(type="hadamard", head_dim=32, apply=[
        TransformArgs(targets=["Linear"], location="input"),
        TransformArgs(targets=["Linear"], location="weight_input", inverse=True)])})
    plain = AutoModelForCausalLM.from_pretrained(out)
    cfg["quantization_config"]["transform_config"] = tc.model_dump()
    (out / "config.json").write_text(json.dumps(cfg))
    with_t = AutoModelForCausalLM.from_pretrained(out)
    q = with_t.model.layers[0].self_attn.q_proj
    assert [n for n, _ in q.named_modules()] == [""] and not q._forward_pre_hooks
    ids = torch.randint(0, 100, (1, 16))
    with torch.no_grad():
        assert torch.equal(plain(input_ids=ids).logits, with_t(input_ids=ids).logits)


def test_lora_qat_trains_only_adapters_then_merges_and_converts(trained_tiny_dir, tokenizer, lm_data, tmp_path, ids):
    from peft import LoraConfig, get_peft_model

    from hf_optquant.optim import build_optimizer

    base = _model(trained_tiny_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                            "up_proj", "down_proj"]))
    prepare_qat(model, QATConfig(quantizer="quest", hadamard_block=64))
    mods = qat_modules(model)
    assert any(n.endswith("q_proj.base_layer") for n in mods) and not any("lora_" in n for n in mods)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    opt = build_optimizer("muon", model, lr=1e-2)  # matrix optimizer on the LoRA matrices
    model.train()
    batch = lm_data[0].blocks[:8]  # one fixed batch: the adapters must fit it under fake quantization
    losses = []
    for _ in range(8):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        assert changed == (n in trainable), n
    model.eval()
    out = convert_qat(model, tmp_path / "lora_quest", tokenizer=tokenizer)
    assert isinstance(model.base_model.model.model.layers[0].self_attn.q_proj.base_layer, QATLinear)
    rec = json.loads((out / "quantization_record.json").read_text())
    assert "model.layers.0.self_attn.q_proj" in rec["quantized_modules"]
    with torch.no_grad():
        logits = AutoModelForCausalLM.from_pretrained(out)(input_ids=ids).logits
    assert torch.isfinite(logits).all() and logits.shape == (*ids.shape, len(tokenizer))
