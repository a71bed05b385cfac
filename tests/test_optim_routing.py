"""The paper's routing on HF causal LMs: tied, untied, peft and DDP-wrapped models."""
from __future__ import annotations

import pytest
import torch

from hf_optquant.models import build_model
from hf_optquant.optim import build_optimizer, route_parameters


def _unique(params):
    return {id(p): p for p in params}


def test_routing_follows_the_paper_on_a_tied_model():
    m = build_model("tiny-2", vocab_size=128, seed=0)
    g = route_parameters(m)
    emb = m.get_input_embeddings().weight
    assert m.get_output_embeddings().weight is emb
    assert len(g["embed"]) == 1 and g["embed"][0] is emb  # tied head counted once
    assert g["hidden"] and all(p.dim() == 2 and p is not emb for p in g["hidden"])
    assert g["gain"] and all(p.dim() == 1 for p in g["gain"])
    everything = [p for k in g for p in g[k]]
    assert len(everything) == len(_unique(everything)) == len(_unique(m.parameters()))


def test_untied_head_joins_the_embedding_group():
    m = build_model("tiny-1", vocab_size=128, seed=0, tie_word_embeddings=False)
    g = route_parameters(m)
    ids = {id(p) for p in g["embed"]}
    assert ids == {id(m.get_input_embeddings().weight), id(m.get_output_embeddings().weight)}
    assert not ids & {id(p) for p in g["hidden"]}


def test_frozen_parameters_are_skipped():
    m = build_model("tiny-1", vocab_size=128, seed=0)
    m.get_input_embeddings().weight.requires_grad_(False)
    g = route_parameters(m)
    assert not g["embed"]
    opt = build_optimizer("adamw", m)
    assert sum(len(pg["params"]) for pg in opt.param_groups) == sum(p.requires_grad for p in m.parameters())


def test_ddp_wrapped_model_routes_like_the_bare_one(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        m = build_model("tiny-1", vocab_size=128, seed=0)
        ddp = torch.nn.parallel.DistributedDataParallel(m)
        bare, wrapped = route_parameters(m), route_parameters(ddp)
        assert {k: [id(p) for p in v] for k, v in bare.items()} == {k: [id(p) for p in v] for k, v in wrapped.items()}
        opt = build_optimizer("muon", ddp)
        before = m.get_input_embeddings().weight.detach().clone()
        x = torch.randint(0, 128, (2, 16))
        ddp(input_ids=x, labels=x).loss.backward()
        opt.step()
        assert not torch.equal(before, m.get_input_embeddings().weight)
        assert [g["name"] for g in opt.param_groups] == ["hidden", "embed", "gain"]
    finally:
        dist.destroy_process_group()


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=1, n_head=2))


def test_learned_position_embeddings_route_with_the_embeddings_and_conv1d_is_known():
    from hf_optquant.optim.routing import transposed_weights

    m = _gpt2()
    g = route_parameters(m)
    embed = {id(p) for p in g["embed"]}
    assert embed == {id(m.transformer.wte.weight), id(m.transformer.wpe.weight)}
    conv = {id(m.transformer.h[0].attn.c_attn.weight), id(m.transformer.h[0].mlp.c_fc.weight)}
    assert conv <= transposed_weights(m) and conv <= {id(p) for p in g["hidden"]}


class _Pair(torch.nn.Module):
    """A Linear (out, in) and a Conv1D (in, out) holding the same matrix, for transpose equivariance."""

    def __init__(self, d_in=8, d_out=32):
        from transformers.pytorch_utils import Conv1D

        super().__init__()
        self.lin = torch.nn.Linear(d_in, d_out, bias=False)
        self.conv = Conv1D(d_out, d_in)
        with torch.no_grad():
            self.conv.weight.copy_(self.lin.weight.T)
        self.conv.bias.requires_grad_(False)


@pytest.mark.parametrize("name", ["muon", "scion", "shampoo"])
def test_conv1d_weights_follow_the_out_in_shape_rules(name):
    m = _Pair()
    opt = build_optimizer(name, m)
    g = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
    before = m.lin.weight.detach().clone()
    for _ in range(2):
        m.lin.weight.grad, m.conv.weight.grad = g.clone(), g.T.clone()
        opt.step()
    du, dc = m.lin.weight.detach() - before, m.conv.weight.detach().T - before
    # Muon's scale sqrt(max(1, 32/8)) = 2 for both (the (in, out) weight would get 1 without the rule).
    assert du.norm() > 0 and ((du - dc).norm() / du.norm()).item() < (2e-2 if name in ("muon", "scion") else 1e-3)


@pytest.mark.parametrize("name", ["psgd", "soap", "shampoo"])
def test_ant_routing_is_the_default_and_adamw_side_group_an_option(name):
    m = build_model("tiny-1", vocab_size=128, seed=0)
    opt = build_optimizer(name, m, lr=1e-3, weight_decay=0.1)
    assert list(opt.optimizers) == ["hidden"]
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"hidden", "embed", "gain"}
    assert all(g["lr"] == 1e-3 and g["weight_decay"] == 0.1 for g in groups.values())
    opt = build_optimizer(name, m, lr=1e-3, weight_decay=0.1, side_optimizer="adamw")
    side = opt.optimizers["side"]
    assert isinstance(side, torch.optim.AdamW)
    assert all(g["lr"] == 3e-3 and g["weight_decay"] == 0.1 for g in side.param_groups)


def test_vocabulary_side_above_12288_follows_the_authors_max_preconditioner_dims():
    """The paper's settings (max dim 12288) on an embedding with a vocabulary above it, as the 32k/50k
    vocabularies of the paper's sizes: PSGD keeps a diagonal factor on that side, SOAP none, Shampoo blocks it."""
    from hf_optquant.optim.shampoo import block_shape, split_blocks

    vocab = 12289
    m = build_model("tiny-1", vocab_size=vocab, seed=0)
    emb = m.get_input_embeddings().weight
    hidden = emb.shape[1]
    batch = torch.randint(0, vocab, (1, 8))
    m(input_ids=batch, labels=batch).loss.backward()
    kron = build_optimizer("psgd", m).optimizers["hidden"]
    soap = build_optimizer("soap", m).optimizers["hidden"]
    for opt in (kron, soap):
        opt.step()
    q = kron.state[emb]["Q"]
    assert [tuple(x.shape) for x in q] == [(vocab,), (hidden, hidden)]  # diagonal on the vocabulary side
    gg = soap.state[emb]["GG"]
    assert len(gg) == 2 and len(gg[0]) == 0 and tuple(gg[1].shape) == (hidden, hidden)  # not preconditioned
    sh = build_optimizer("shampoo", m).optimizers["hidden"]
    assert sh.param_groups[0]["max_preconditioner_dim"] == 12288
    # Meta's rule at the paper's 125M shape: the 32000 x 768 embedding in blocks of <= 12288 rows, each with
    # a full factor per side (checked on a meta-device tensor: no memory).
    shape = block_shape((32000, 768), 12288, sh.param_groups[0]["merge_small_dims"])
    blocks = split_blocks(torch.empty(shape, device="meta"), 12288)
    assert [tuple(b.shape) for b in blocks] == [(12288, 768), (12288, 768), (7424, 768)]
