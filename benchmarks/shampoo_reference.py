"""Our Shampoo against Meta's DistributedShampoo (what the paper ran), side by side on one problem.

    git clone https://github.com/facebookresearch/optimizers /tmp/meta && git -C /tmp/meta checkout a79ef50^
    python benchmarks/shampoo_reference.py --meta-src /tmp/meta [--steps 50]

Meta's package is not on the package index; it is pure torch, so its source directory on the path is
enough (it is imported from there, never copied). The problem: three matrices 192x128, 128x192, 128x128
(a tanh MLP on fresh Gaussian inputs each step, plus a small quadratic pull), 50 steps with the authors'
settings: betas (0.95, 0.95), epsilon 1e-10, AdamGraftingConfig(0.95, 1e-10), precondition frequency 20,
start step -1, max preconditioner dim 12288, bias correction, decoupled weight decay 0.1. Printed: the
weight difference relative to the distance Meta's weights moved, and the ratio of the first updates'
norms, for ours and for pytorch_optimizer's ScalableShampoo with the closest settings it offers.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys

import torch

SHAPES = [(192, 128), (128, 192), (128, 128)]


def _loss(ws, targets, step):
    x = torch.randn(32, 128, generator=torch.Generator().manual_seed(step))
    h = torch.tanh(torch.tanh(x @ ws[2]) @ ws[1]) @ ws[0]
    return ((h - x.roll(1, 1)) ** 2).mean() + 1e-3 * sum(((w - 0.01 * t) ** 2).sum() for w, t in zip(ws, targets))


def _run(make, w0, targets, steps):
    ws = [torch.nn.Parameter(w.clone()) for w in w0]
    opt, first = make(ws), None
    for t in range(steps):
        opt.zero_grad()
        _loss(ws, targets, t).backward()
        opt.step()
        if t == 0:
            first = [w.detach() - a for w, a in zip(ws, w0)]
    return [w.detach() for w in ws], first


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--meta-src", required=True, help="checkout of facebookresearch/optimizers (a79ef50^)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--weight-decay", type=float, default=0.1)
    args = p.parse_args(argv)
    sys.path.insert(0, args.meta_src)
    logging.disable(logging.WARNING)  # Meta logs every preconditioner it builds
    import distributed_shampoo as ds
    from pytorch_optimizer import ScalableShampoo
    from pytorch_optimizer.optimizer.utils.graft import LayerWiseGrafting

    from hf_optquant.optim.shampoo import Shampoo

    torch.manual_seed(0)
    w0 = [torch.randn(s) * 0.02 for s in SHAPES]
    targets = [torch.randn(s) for s in SHAPES]
    cfg = dict(lr=args.lr, betas=(0.95, 0.95), epsilon=1e-10, weight_decay=args.weight_decay,
               max_preconditioner_dim=12288, precondition_frequency=20, start_preconditioning_step=-1,
               use_bias_correction=True, use_decoupled_weight_decay=True)
    runs = {
        "meta": lambda ws: ds.DistributedShampoo(ws, **cfg, grafting_config=ds.AdamGraftingConfig(beta2=0.95, epsilon=1e-10)),
        "ours": lambda ws: Shampoo(ws, **cfg, grafting="adam", grafting_beta2=0.95, grafting_epsilon=1e-10),
        "pytorch_optimizer ScalableShampoo": lambda ws: ScalableShampoo(
            ws, lr=args.lr, betas=(0.95, 0.95), moving_average_for_momentum=True, weight_decay=args.weight_decay,
            decoupled_weight_decay=True, start_preconditioning_step=20, preconditioning_compute_steps=20,
            statistics_compute_steps=1, block_size=12288, no_preconditioning_for_layers_with_dim_gt=12288,
            graft_type=LayerWiseGrafting.RMSPROP, diagonal_eps=1e-10, matrix_eps=1e-6),
    }
    out = {k: _run(make, w0, targets, args.steps) for k, make in runs.items()}
    wm, fm = out["meta"]
    moved = math.sqrt(sum(((a - b) ** 2).sum().item() for a, b in zip(wm, w0)))
    norm = lambda ts: math.sqrt(sum((t ** 2).sum().item() for t in ts))  # noqa: E731
    print(f"{args.steps} steps; distance Meta's weights moved: {moved:.4e}")
    print("| optimizer | weight difference / distance moved | first update norm / Meta's |")
    print("|---|---|---|")
    for k in ("ours", "pytorch_optimizer ScalableShampoo"):
        w, f = out[k]
        rel = math.sqrt(sum(((a - b) ** 2).sum().item() for a, b in zip(w, wm))) / moved
        print(f"| {k} | {rel:.3e} | {norm(f) / norm(fm):.6f} |")


if __name__ == "__main__":
    main()
