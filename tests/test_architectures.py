"""GPT-2 (Conv1D), OPT, GPT-NeoX and Phi: QAT finds the decoder-block linears itself, fake-quantizes
Conv1D like nn.Linear, and PTQ/diagnose work on them. Tiny configs, built offline."""
from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPTNeoXConfig,
    OPTConfig,
    PhiConfig,
)
from transformers.pytorch_utils import Conv1D

from hf_optquant.models.anatomy import (
    block_linears,
    conv1d_to_linear,
    decoder_blocks,
    in_out_features,
)
from hf_optquant.qat import (
    QATConfig,
    QATLinear,
    find_targets,
    prepare_qat,
    qat_modules,
    strip_qat,
)
from hf_optquant.quant import fake_quant_per_token, fake_quant_rtn

V = 128
CONFIGS = {
    "gpt2": (GPT2Config(n_embd=64, n_layer=2, n_head=2, vocab_size=V, n_positions=64),
             {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}),
    "opt": (OPTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, ffn_dim=128, vocab_size=V,
                      max_position_embeddings=64, word_embed_proj_dim=64),
            {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2"}),
    "neox": (GPTNeoXConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                           vocab_size=V, max_position_embeddings=64),
             {"attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h"}),
    "phi": (PhiConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                      vocab_size=V, max_position_embeddings=64),
            {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.dense", "mlp.fc1", "mlp.fc2"}),
}


def _model(arch):
    torch.manual_seed(0)
    cfg = CONFIGS[arch][0]
    for tok in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(cfg, tok, None) is not None:
            setattr(cfg, tok, 1)
    return AutoModelForCausalLM.from_config(cfg).eval()


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_auto_targets_are_the_block_linears_and_the_head(arch):
    model = _model(arch)
    path, blocks = decoder_blocks(model)
    found = find_targets(model, QATConfig(hadamard_block=32))
    head = [n for n, m in model.named_modules() if m is model.get_output_embeddings()]
    per_block = {n.split(f"{path}.0.", 1)[1] for n in found if n.startswith(f"{path}.0.")}
    assert per_block == CONFIGS[arch][1]
    assert len(found) == len(blocks) * len(CONFIGS[arch][1]) + 1 and head[0] in found
    prepare_qat(model, QATConfig(quantizer="rtn"))
    assert len(qat_modules(model)) == len(found)


def test_gpt2_conv1d_fake_quant_matches_a_float64_reference_and_round_trips():
    model = _model("gpt2")
    conv = model.transformer.h[0].mlp.c_fc
    assert isinstance(conv, Conv1D) and in_out_features(conv) == (64, 256)
    w = conv.weight
    x = torch.randn(2, 5, 64, dtype=torch.float64)
    layer = QATLinear.from_linear(conv, QATConfig(quantizer="rtn", w_bits=4, a_bits=4)).double()
    assert layer.weight is w and layer.conv1d
    # Conv1D computes x @ W + b with W (in, out): scales are per output channel = per column of W.
    wq = fake_quant_rtn(w.detach().double().t(), 4, "row")
    ref = fake_quant_per_token(x, 4) @ wq.t() + conv.bias.detach().double()
    torch.testing.assert_close(layer(x), ref, atol=1e-10, rtol=0)
    layer.enabled = False
    torch.testing.assert_close(layer(x), x @ w.detach().double() + conv.bias.detach().double(), atol=1e-10, rtol=0)
    # quest: the whole model trains (gradient reaches the (in, out) Parameter) and strips back to Conv1D.
    model = _model("gpt2").train()
    keys = list(model.state_dict())
    prepare_qat(model, QATConfig(hadamard_block=32))
    ids = torch.randint(0, V, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    assert model.transformer.h[0].attn.c_attn.weight.grad.abs().sum() > 0
    assert list(model.state_dict()) == keys
    strip_qat(model)
    assert isinstance(model.transformer.h[0].attn.c_attn, Conv1D)


def test_conv1d_to_linear_is_the_same_function():
    model = _model("gpt2")
    ids = torch.randint(0, V, (2, 16))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        names = conv1d_to_linear(model)
        got = model(input_ids=ids).logits
    assert len(names) == 8 and all(isinstance(m, torch.nn.Linear) for m in block_linears(model).values())
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_bad_name_pattern_says_linear_or_conv1d():
    from hf_optquant.errors import ConfigError

    with pytest.raises(ConfigError, match="Conv1D"):
        prepare_qat(_model("gpt2"), QATConfig(targets=["q_proj"], hadamard_block=32))
    model = _model("gpt2")
    prepare_qat(model, QATConfig(targets=["c_attn"], hadamard_block=32))  # the name GPT-2 users know
    assert sorted(qat_modules(model)) == ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_gpt2_ptq_exports_a_checkpoint_plain_transformers_loads(method, tmp_path):
    """compressed-tensors skips Conv1D, so GPT-2 is written as the equivalent GPTBigCode
    (nn.Linear); the reloaded logits equal the in-process quantized model's."""
    import json

    from hf_optquant.ptq import PTQConfig, quantize_model, save_compressed_checkpoint

    model = _model("gpt2")
    ids = torch.randint(0, V, (3, 24))
    cfg = PTQConfig(method=method, w_bits=4, a_bits=8)
    qmodel, qweights = quantize_model(model, cfg, calibration=torch.randint(0, V, (8, 32)))
    assert isinstance(model.transformer.h[0].attn.c_attn, Conv1D)  # the input model is left as it was
    assert len(qweights) == 8
    out = save_compressed_checkpoint(model, tmp_path / "q", qweights=qweights, scheme=cfg.scheme,
                                     record={"method": method})
    assert json.loads((out / "config.json").read_text())["model_type"] == "gpt_bigcode"
    with torch.no_grad():
        want = qmodel(input_ids=ids).logits
        got = AutoModelForCausalLM.from_pretrained(out).eval()(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("quantizer", ["rtn", "quest"])
def test_gpt2_qat_converts_and_reloads(quantizer, tmp_path):
    from hf_optquant.qat import convert_qat, load_quest

    model = prepare_qat(_model("gpt2"), QATConfig(quantizer=quantizer, hadamard_block=32))
    ids = torch.randint(0, V, (3, 24))
    with torch.no_grad():
        want = model(input_ids=ids).logits
    out = convert_qat(model, tmp_path / quantizer)
    loaded = (load_quest(out) if quantizer == "quest" else AutoModelForCausalLM.from_pretrained(out)).eval()
    with torch.no_grad():
        got = loaded(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_qat_wrapped_conv1d_is_still_seen_as_in_out_by_the_optimizers():
    from hf_optquant.optim.routing import transposed_weights

    model = _model("gpt2")
    before = transposed_weights(model)
    prepare_qat(model, QATConfig(hadamard_block=32))
    assert len(before) == 8 and transposed_weights(model) == before
