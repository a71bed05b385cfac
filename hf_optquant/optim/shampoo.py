"""Shampoo as the paper ran it: Meta's Distributed Shampoo with Adam grafting (docs/method.md; the authors' settings in docs/optimizers.md).

Why hand-written: the paper used ``DistributedShampoo`` from facebookresearch/optimizers, which is
not on the package index (it cannot be a dependency), and the Shampoo that is installable here
(pytorch_optimizer's ``ScalableShampoo``) differs in every point that matters: it merges a matrix
with at most ``max_preconditioner_dim`` entries into shape [1] (no preconditioning at all on small
models), has no bias correction of the factor statistics, applies momentum after grafting, and
damps relative to the largest eigenvalue with Schur-Newton iterations. This module re-implements
the update of Meta's version (state of a79ef50^, the API the authors' framework calls:
``betas``, ``epsilon``, ``AdamGraftingConfig``, ``use_bias_correction``) in its order of operations,
with Meta's default root-inverse path (symmetric eigendecomposition, ``epsilon`` added before it):

    G <- G + wd W                                      (only with coupled weight decay)
    L_k <- b2 L_k + (1 - b2) G_(k) G_(k)^T            (every block, every step, fp32)
    V <- b2' V + (1 - b2') G^2                         (Adam graft statistics)
    every `precondition_frequency` steps from `start_preconditioning_step`:
        A = L_k / (1 - b2^t) + eps I;  A = Q diag(l) Q^T;  if min l < eps: l <- l - min l + eps
        P_k = Q diag(l^(-1/r)) Q^T,   r = 2 x (order of the block)
    M <- b1 M + (1 - b1) G;   M^ = M / (1 - b1^t)     (filtered gradient)
    D_graft = M^ / (sqrt(V / (1 - b2'^t)) + eps')
    D = D_graft                                       if t < start_preconditioning_step
    D = |D_graft| / (|D_sh| + 1e-16) D_sh,  D_sh = M^ x_1 P_1 ... x_k P_k   (per block)
    D <- D + wd W                                      (decoupled weight decay)
    B <- mu B + (1 - dampening) D;  D = B, or (1 - dampening) D + mu B with Nesterov
    W <- W - lr D

Blocks: a parameter is reshaped (size-1 dims dropped; with ``merge_small_dims`` also Meta's merging
of adjacent dims whose product stays <= ``max_preconditioner_dim``) and cut into blocks of at most
``max_preconditioner_dim`` along every dim, each with its own factors and graft norm.
Deviation, on by default: Meta merges a whole matrix with <= ``max_preconditioner_dim`` entries into
one vector with a single (rows x cols)^2 factor. No matrix of the paper's sizes (>= 512 x 512) is that
small, so this never happens there; on the tiny CPU presets it would mean a 12288 x 12288
eigendecomposition for a 64 x 192 matrix, so by default such a matrix keeps its two Kronecker
factors (``merge_small_dims=True`` reproduces Meta exactly).

Speed: factor statistics stay fp32 whatever the parameter dtype; the inverse roots are computed
only every ``precondition_frequency`` steps, for all factors of the same size at once with one
stacked ``torch.linalg.eigh``; same-shaped blocks of up to 1024 x 1024 are preconditioned with batched
matmuls (larger ones one by one: their matmuls are large enough, and stacking would copy the factors).

State is tensors only (``torch.load(weights_only=True)`` safe) and every per-parameter computation
reads plain local tensors (the parameter, its gradient and its state), so a gather/scatter wrapper
can run it on sharded parameters.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from functools import reduce

import torch

__all__ = ["Shampoo", "GRAFTINGS", "block_shape", "split_blocks", "matrix_inverse_roots"]

GRAFTINGS = ("adam", "rmsprop", "adagrad", "sgd", "none")
_FP32_KEYS = ("factor.", "inv_factor.")  # state entries kept in float32 whatever the parameter dtype
# Same-shaped 2-D blocks are preconditioned with one batched matmul only up to this size: stacking copies
# every inverse factor each step, which for large factors (the 2048^2 MLP factors, 12288^2 vocabulary blocks)
# costs more than it saves (issue 18: 20% of a 125M step on CPU, and a 2 x 0.6 GB transient per step).
_BATCH_MAX_DIM = 1024


def block_shape(shape: tuple[int, ...], max_dim: int, merge_small_dims: bool) -> tuple[int, ...]:
    """The shape a parameter is viewed as before blocking (Meta's ``merge_small_dims`` with
    ``target_parameter_dimensionality=1`` when ``merge_small_dims``; else size-1 dims dropped)."""
    if 0 in shape:
        return (0,)
    squeezed = [d for d in reversed(shape) if d != 1] or [1]
    if not merge_small_dims:
        return tuple(reversed(squeezed))
    merged = [squeezed[0]]
    for d in squeezed[1:]:
        if merged[-1] * d <= max_dim:  # Meta merges from the last dim backwards
            merged[-1] *= d
        else:
            merged.append(d)
    return tuple(reversed(merged))


def split_blocks(t: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Views of ``t`` cut into blocks of at most ``size`` along every dim (Meta's ``multi_dim_split``)."""
    return list(reduce(lambda ts, dim: [s for x in ts for s in torch.split(x, size, dim=dim)], range(t.dim()), [t]))


@torch.no_grad()
def matrix_inverse_roots(a: torch.Tensor, root: float, epsilon: float) -> torch.Tensor:
    """``A^(-1/root)`` of a stack (..., n, n) of symmetric PSD matrices, as Meta's ``EigenConfig``
    with ``PerturbationConfig(perturb_before_computation=True)``: eigendecomposition of A + eps I, then
    eigenvalues shifted by -min + eps when the smallest is below eps (rounding can make it negative)."""
    n = a.shape[-1]
    eye = torch.eye(n, dtype=a.dtype, device=a.device)
    try:
        lam, q = torch.linalg.eigh(a + epsilon * eye)
    except RuntimeError:  # as Meta: retry in double precision when the solver fails
        lam, q = (x.to(a.dtype) for x in torch.linalg.eigh((a + epsilon * eye).double()))
    lam_min = lam.min(dim=-1, keepdim=True).values
    lam = torch.where(lam_min < epsilon, lam - lam_min + epsilon, lam)
    return (q * lam.pow(-1.0 / root).unsqueeze(-2)) @ q.transpose(-1, -2)


def _outer(g: torch.Tensor, k: int) -> torch.Tensor:
    """G_(k) G_(k)^T: contraction of a block with itself over every dim but ``k``."""
    others = [d for d in range(g.dim()) if d != k]
    return torch.tensordot(g, g, dims=[others, others])


def _precondition(g: torch.Tensor, invs: list[torch.Tensor]) -> torch.Tensor:
    """G x_1 P_1 ... x_k P_k in Meta's contraction order (each step rotates the dims left)."""
    for p in invs:
        g = torch.tensordot(g, p, dims=([0], [0]))
    return g


class Shampoo(torch.optim.Optimizer):
    """Meta's Distributed Shampoo (single device) with grafting; defaults are Meta's.

    Args mirror ``DistributedShampoo``: ``betas`` = (beta1 of the filtered gradient, beta2 of the
    factors), ``epsilon`` of the inverse roots, ``momentum``/``dampening``/``use_nesterov`` on the
    search direction, ``grafting`` one of adam (Meta's ``AdamGraftingConfig``), rmsprop, adagrad, sgd,
    none with ``grafting_beta2`` / ``grafting_epsilon``; ``start_preconditioning_step=None`` is Meta's -1
    (= ``precondition_frequency``).
    """

    def __init__(self, params: Iterable, lr: float = 1e-2, betas: tuple[float, float] = (0.9, 1.0),
                 epsilon: float = 1e-12, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 max_preconditioner_dim: int = 1024, precondition_frequency: int = 1,
                 start_preconditioning_step: int | None = None, use_nesterov: bool = False,
                 use_bias_correction: bool = True, use_decoupled_weight_decay: bool = True,
                 grafting: str = "adam", grafting_beta2: float = 0.999, grafting_epsilon: float = 1e-8,
                 merge_small_dims: bool = False):
        if start_preconditioning_step is None or start_preconditioning_step == -1:
            start_preconditioning_step = precondition_frequency
        checks = {
            "lr": lr >= 0, "betas": len(betas) == 2 and 0 <= betas[0] < 1 and 0 <= betas[1] <= 1,
            "epsilon": epsilon > 0, "momentum": 0 <= momentum < 1, "dampening": 0 <= dampening < 1,
            "weight_decay": weight_decay >= 0, "max_preconditioner_dim": max_preconditioner_dim >= 1,
            "precondition_frequency": precondition_frequency >= 1,
            "start_preconditioning_step": start_preconditioning_step >= 1, "grafting": grafting in GRAFTINGS,
            "grafting_beta2": 0 <= grafting_beta2 <= 1, "grafting_epsilon": grafting_epsilon > 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"Shampoo: invalid {', '.join(bad)}")
        defaults = dict(lr=lr, betas=tuple(betas), epsilon=epsilon, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, max_preconditioner_dim=int(max_preconditioner_dim),
                        precondition_frequency=int(precondition_frequency),
                        start_preconditioning_step=int(start_preconditioning_step), use_nesterov=use_nesterov,
                        use_bias_correction=use_bias_correction,
                        use_decoupled_weight_decay=use_decoupled_weight_decay, grafting=grafting,
                        grafting_beta2=grafting_beta2, grafting_epsilon=grafting_epsilon,
                        merge_small_dims=merge_small_dims)
        super().__init__(params, defaults)

    # ----- per-parameter pieces (plain local tensors) -----
    @staticmethod
    def _blocks(t: torch.Tensor, group: dict) -> list[torch.Tensor]:
        shape = block_shape(tuple(t.shape), group["max_preconditioner_dim"], group["merge_small_dims"])
        return split_blocks(t.reshape(shape), group["max_preconditioner_dim"])

    def _init_state(self, p: torch.Tensor, group: dict) -> dict:
        state = self.state[p]
        state["step"] = torch.tensor(0, dtype=torch.int64)
        for b, block in enumerate(self._blocks(p.detach(), group)):
            for k, n in enumerate(block.shape):
                state[f"factor.{b}.{k}"] = torch.zeros(n, n, dtype=torch.float32, device=p.device)
                state[f"inv_factor.{b}.{k}"] = torch.eye(n, dtype=torch.float32, device=p.device)
        if group["betas"][0] > 0:
            state["filtered_grad"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["grafting"] in ("adam", "rmsprop", "adagrad"):
            state["graft"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["momentum"] > 0:
            state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @staticmethod
    def _factors(state: dict, b: int, order: int, prefix: str = "factor") -> list[torch.Tensor]:
        return [state[f"{prefix}.{b}.{k}"] for k in range(order)]

    def _update_statistics(self, p, grad, state, group) -> None:
        beta2 = group["betas"][1]
        for b, g in enumerate(self._blocks(grad, group)):
            g32 = g.float()
            for k, f in enumerate(self._factors(state, b, g.dim())):
                if g.dim() == 2:  # one fused GEMM per factor: f = b2 f + (1 - b2) G G^T (or G^T G)
                    x = g32 if k == 0 else g32.T
                    f.addmm_(x, x.T, beta=beta2 if beta2 != 1.0 else 1.0, alpha=1 - beta2 if beta2 != 1.0 else 1.0)
                elif beta2 == 1.0:
                    f.add_(_outer(g32, k))
                else:
                    f.mul_(beta2).add_(_outer(g32, k), alpha=1 - beta2)
        if "graft" in state:
            v, gb2 = state["graft"], (1.0 if group["grafting"] == "adagrad" else group["grafting_beta2"])
            if gb2 == 1.0:
                v.addcmul_(grad, grad)
            else:
                v.mul_(gb2).addcmul_(grad, grad, value=1 - gb2)

    @staticmethod
    def _graft(direction: torch.Tensor, state: dict, group: dict, step: int) -> torch.Tensor:
        if group["grafting"] in ("sgd", "none"):
            return direction
        v = state["graft"]
        if group["grafting"] == "adam" and group["grafting_beta2"] < 1.0:
            v = v / (1 - group["grafting_beta2"] ** step)
        return direction / (v.sqrt() + group["grafting_epsilon"])

    # ----- the step -----
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pending = []  # (state, group, step) whose inverse roots are due this step
        work = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or p.grad.numel() == 0:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Shampoo does not support sparse gradients")
                state = self.state[p] if self.state[p] else self._init_state(p, group)
                grad = p.grad
                if group["weight_decay"] != 0 and not group["use_decoupled_weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state["step"] += 1
                t = int(state["step"])
                self._update_statistics(p, grad, state, group)
                start, freq = group["start_preconditioning_step"], group["precondition_frequency"]
                if (t % freq == 0 and t > start) or t == start:
                    pending.append((state, group, t))
                work.append((p, grad, state, group, t))
        self._compute_inverse_roots(pending)
        directions = self._search_directions(work)
        for (p, _, state, group, _t), d in zip(work, directions):
            self._apply(p, d, state, group)
        return loss

    @staticmethod
    def _compute_inverse_roots(pending: list) -> None:
        """All due factors of one size and root at once: one stacked eigendecomposition."""
        by_key = defaultdict(list)
        for state, group, t in pending:
            beta2 = group["betas"][1]
            bc = 1 - beta2 ** t if group["use_bias_correction"] and beta2 < 1.0 else 1.0
            names = [k for k in state if k.startswith("factor.")]
            orders = defaultdict(int)
            for name in names:
                orders[name.split(".")[1]] += 1
            for name in names:
                f = state[name]
                by_key[(f.shape[0], 2 * max(orders[name.split(".")[1]], 1), group["epsilon"], f.device)].append(
                    (f, bc, state["inv_" + name], name))
        for (_, root, eps, _), items in by_key.items():
            a = torch.stack([f / bc for f, bc, _, _ in items])
            if not torch.isfinite(a).all():
                bad = [name for f, _, _, name in items if not torch.isfinite(f).all()]
                raise FloatingPointError(f"Shampoo: non-finite factor statistics ({', '.join(bad)}); "
                                         "check the loss for NaN/Inf or lower the learning rate")
            invs = matrix_inverse_roots(a, root, eps)
            if not torch.isfinite(invs).all():
                raise FloatingPointError("Shampoo: non-finite inverse root; raise epsilon or lower the learning rate")
            for (_, _, inv, _), new in zip(items, invs):
                inv.copy_(new)

    def _search_directions(self, work: list) -> list[torch.Tensor]:
        """Filtered gradient -> grafted Shampoo direction per parameter; same-shaped 2-D blocks of all
        parameters are preconditioned together with batched matmuls."""
        out, jobs = [], defaultdict(list)  # jobs: shape -> [(block m, [inv...], out view, graft view)]
        for _p, grad, state, group, t in work:
            beta1 = group["betas"][0]
            if beta1 > 0:
                m = state["filtered_grad"].lerp_(grad, 1 - beta1)
                if group["use_bias_correction"]:
                    m = m / (1 - beta1 ** t)
            else:
                m = grad
            graft = self._graft(m, state, group, t)
            if t < group["start_preconditioning_step"] and group["grafting"] != "none":
                out.append(graft)
                continue
            d = torch.empty(m.shape, dtype=torch.float32, device=m.device)
            for b, (mb, db, gb) in enumerate(zip(self._blocks(m, group), self._blocks(d, group),
                                                 self._blocks(graft, group))):
                invs = self._factors(state, b, mb.dim(), "inv_factor")
                jobs[tuple(mb.shape)].append((mb, invs, db, gb, group["grafting"] != "none"))
            out.append(d)
        for shape, items in jobs.items():
            if len(shape) == 2 and len(items) > 1 and max(shape) <= _BATCH_MAX_DIM:
                g = torch.stack([mb.float() for mb, *_ in items])
                left = torch.stack([invs[0] for _, invs, *_ in items])
                right = torch.stack([invs[1] for _, invs, *_ in items])
                pre = left.transpose(-1, -2) @ g @ right  # = Meta's tensordot order for a 2-D block
            elif len(shape) == 2:
                pre = [invs[0].transpose(-1, -2) @ mb.float() @ invs[1] for mb, invs, *_ in items]
            else:
                pre = [_precondition(mb.float(), invs) for mb, invs, *_ in items]
            for (_mb, _invs, db, gb, grafted), sh in zip(items, pre):
                if grafted:
                    sh = sh * (torch.linalg.vector_norm(gb.float()) / (torch.linalg.vector_norm(sh) + 1e-16))
                db.copy_(sh)
        return [d.to(p.dtype) if d.dtype != p.dtype else d for (p, *_), d in zip(work, out)]

    @staticmethod
    def _apply(p: torch.Tensor, d: torch.Tensor, state: dict, group: dict) -> None:
        if group["weight_decay"] != 0 and group["use_decoupled_weight_decay"]:
            d = d.add(p, alpha=group["weight_decay"])
        mu = group["momentum"]
        if mu != 0:
            buf = state["momentum"]
            buf.mul_(mu).add_(d, alpha=1 - group["dampening"])
            d = d.mul(1 - group["dampening"]).add_(buf, alpha=mu) if group["use_nesterov"] else buf
        p.add_(d, alpha=-group["lr"])

    def load_state_dict(self, state_dict: dict) -> None:
        # torch casts floating state to the parameter's dtype: keep the factors in float32.
        saved = {pid: {k: v for k, v in s.items() if k.startswith(_FP32_KEYS)}
                 for pid, s in state_dict["state"].items()}
        super().load_state_dict(state_dict)
        ids = [p for g in self.param_groups for p in g["params"]]
        for pid, entries in saved.items():
            p = ids[int(pid)]
            for k, v in entries.items():
                self.state[p][k] = v.to(device=p.device, dtype=torch.float32, copy=True)

