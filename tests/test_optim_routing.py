"""The paper's routing on HF causal LMs: tied, untied, peft and DDP-wrapped models."""
from __future__ import annotations

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
