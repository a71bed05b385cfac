"""Matrix optimizers under FSDP2: gather each parameter to one owner rank, step there, shard the result.

Why hand-written: the library optimizers (torch Muon, pytorch_optimizer's Kron, SOAP, SCION, ScalableShampoo
and our own Shampoo) see FSDP2's DTensor shards and either fail on mixed Tensor/DTensor ops (Kron's
Kronecker factors, SOAP's eigenbases) or compute a preconditioner from a row block instead of the whole
matrix. Neither torch nor accelerate ships a wrapper that runs an arbitrary optimizer on whole matrices
while keeping its state sharded; Distributed Shampoo and distributed Muon do it inside their own code.

``GatheredOptimizer`` wraps any ``torch.optim.Optimizer`` without touching its math:

* every DTensor parameter is assigned to one owner rank (greedy by size, the same on every rank);
* at each step every rank sends its row shard of the weight and of the gradient to the owner only
  (``dist.gather``), the owner puts the whole matrix into a plain full-size proxy tensor, and the wrapped
  optimizer steps the owner's proxies only;
* the owner sends each rank its row shard of the new weight (``dist.scatter``).

Traffic: a rank receives the other shards of the matrices it owns and its own shard of every matrix,
about 3 N (w - 1) / w^2 bytes per step for N bytes of matrices on w ranks, on top of FSDP's own
all-gathers and reduce-scatter (~3 N). Gathering every matrix to every rank (``full_tensor``) and
broadcasting the result would be 3 N (w - 1) / w per rank, w times more; that path remains only for
placements other than FSDP2's dim-0 row shards.

So the update is the one-process update on the whole matrix (up to the order of the gradient reduction),
and the optimizer state of each parameter lives on its owner only: state bytes per rank ~ total / world.
Single-process or DDP parameters (plain tensors) pass straight through. Element-wise optimizers (AdamW)
need none of this: they run on the local shards, which is exactly the same update.

``sharded_state_dict`` / ``load_sharded_state_dict`` save and restore one rank's part of a
``CombinedOptimizer`` (DTensor state as local tensors) for checkpoints under FSDP2.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ConfigError

__all__ = ["GATHERED", "GatheredOptimizer", "gather_matrix_optimizers", "is_sharded", "state_bytes",
           "sharded_state_dict", "load_sharded_state_dict"]

# Optimizers whose "hidden" sub-optimizer needs whole matrices (Newton-Schulz / LMO, Kronecker factors,
# eigenbases). AdamW is element-wise: its update on a shard is the update of that shard.
GATHERED = ("muon", "psgd", "scion", "shampoo", "soap")

_SHARDED = "__hfoq_sharded__"


def _dtensor_cls():
    from torch.distributed.tensor import DTensor

    return DTensor


def is_sharded(p: torch.Tensor) -> bool:
    """Whether ``p`` is a DTensor (an FSDP2 / tensor-parallel shard)."""
    return dist.is_available() and isinstance(p, _dtensor_cls())


def _params(groups: Iterable[dict]) -> list[torch.Tensor]:
    return [p for g in groups for p in g["params"]]


def _padded(t: torch.Tensor, rows: int) -> torch.Tensor:
    """``t`` with zero rows appended up to ``rows`` (gather/scatter need equal sizes on every rank)."""
    if t.shape[0] == rows:
        return t.contiguous()
    out = t.new_zeros((rows, *t.shape[1:]))
    out[:t.shape[0]] = t
    return out


def _owners(params: list[torch.Tensor], world: int) -> dict[int, int]:
    """Owner rank of each parameter (by position): largest first onto the least-loaded rank."""
    load = [0] * world
    owner = {}
    for i in sorted(range(len(params)), key=lambda i: (-params[i].numel(), i)):
        r = min(range(world), key=lambda r: (load[r], r))
        owner[i] = r
        load[r] += params[i].numel()
    return owner


class GatheredOptimizer(torch.optim.Optimizer):
    """``inner`` stepped on whole matrices under FSDP2, with its state on one owner rank per parameter.

    ``param_groups`` are ``inner``'s own group dicts holding the real (DTensor) parameters, so LR schedulers,
    accelerate's FSDP2 parameter swap and gradient clipping see the model's parameters.
    """

    def __init__(self, inner: torch.optim.Optimizer):
        self.inner = inner
        self._proxies: dict[int, torch.Tensor] = {}  # id(real param) -> full-size proxy (owned params only)
        self._owner: dict[int, int] | None = None  # id(real param) -> owner rank in the mesh group
        self._group = None
        self._rank = 0
        self.defaults = inner.defaults
        # torch.optim.Optimizer.__init__ would rebuild the groups; only its hook registries are needed.
        for name in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks", "_optimizer_state_dict_pre_hooks",
                     "_optimizer_state_dict_post_hooks", "_optimizer_load_state_dict_pre_hooks",
                     "_optimizer_load_state_dict_post_hooks"):
            setattr(self, name, OrderedDict())

    # torch.optim.Optimizer API: the wrapped optimizer's groups and state.
    @property
    def param_groups(self):
        return self.inner.param_groups

    @param_groups.setter
    def param_groups(self, value):
        self.inner.param_groups = value

    @property
    def state(self):
        return self.inner.state

    def _sharded(self) -> bool:
        params = _params(self.inner.param_groups)
        flags = {is_sharded(p) for p in params}
        if len(flags) > 1:
            raise ConfigError("fsdp", "some parameters of one optimizer are FSDP2 shards and some are not",
                              "shard the whole model with fully_shard (or none of it)")
        return flags == {True}

    def _setup(self) -> None:
        params = _params(self.inner.param_groups)
        if self._owner is not None and set(self._owner) == {id(p) for p in params}:
            return
        meshes = {p.device_mesh for p in params}
        if len(meshes) != 1 or next(iter(meshes)).ndim != 1:
            raise ConfigError("fsdp", "the matrix optimizers support FSDP2 on one 1-D device mesh",
                              "use fully_shard over one data-parallel mesh (no HSDP / tensor parallel)")
        mesh = next(iter(meshes))
        self._group = mesh.get_group()
        self._rank = dist.get_rank(self._group)
        owners = _owners(params, dist.get_world_size(self._group))
        self._owner = {id(p): owners[i] for i, p in enumerate(params)}
        old, self._proxies = self._proxies, {}
        for p in params:
            if self._owner[id(p)] == self._rank:
                # Re-use a proxy across accelerate's parameter swap so its optimizer state stays attached.
                proxy = old.get(id(p))
                if proxy is None:
                    proxy = torch.empty(0, dtype=p.dtype, device=p.to_local().device)
                self._proxies[id(p)] = proxy

    def _swap_in(self) -> list[list[torch.Tensor]]:
        """Replace each group's params by this rank's proxies; returns the real lists to restore."""
        saved = []
        for g in self.inner.param_groups:
            saved.append(g["params"])
            g["params"] = [self._proxies[id(p)] for p in g["params"] if id(p) in self._proxies]
        return saved

    def _swap_out(self, saved: list[list[torch.Tensor]]) -> None:
        for g, real in zip(self.inner.param_groups, saved):
            g["params"] = real

    @torch.no_grad()
    def step(self, closure=None):
        if not self._sharded():
            return self.inner.step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._setup()
        params = _params(self.inner.param_groups)
        for p in params:
            if p.grad is None:
                continue
            # Collective on every rank; only the owner receives (and keeps) the whole matrix.
            weight, grad = self._to_owner(p, p), self._to_owner(p, p.grad)
            proxy = self._proxies.get(id(p))
            if proxy is not None:
                proxy.data = weight
                proxy.grad = grad
        saved = self._swap_in()
        try:
            self.inner.step()
        finally:
            self._swap_out(saved)
        self._scatter(params)
        return loss

    def _row_shards(self, p) -> list[int] | None:
        """Rows of each rank's shard when ``p`` is FSDP2's dim-0 shard (``torch.chunk`` sizes, trailing ranks
        possibly empty), else None."""
        from torch.distributed.tensor import Shard

        if tuple(p.placements) != (Shard(0),):
            return None
        world, size = dist.get_world_size(self._group), -(-p.shape[0] // dist.get_world_size(self._group))
        rows = [max(0, min(size, p.shape[0] - r * size)) for r in range(world)]
        return rows if p.to_local().shape[0] == rows[self._rank] else None

    def _to_owner(self, p, t) -> torch.Tensor | None:
        """The whole of ``t`` (``p`` or its gradient) on ``p``'s owner, None elsewhere."""
        rows = self._row_shards(p)
        if rows is None:
            full = t.full_tensor()
            return full if self._owner[id(p)] == self._rank else None
        local = t.to_local()
        dst = dist.get_global_rank(self._group, self._owner[id(p)])
        send = _padded(local, max(rows))
        if self._owner[id(p)] != self._rank:
            dist.gather(send, dst=dst, group=self._group)
            return None
        bufs = [torch.empty_like(send) for _ in rows]
        dist.gather(send, gather_list=bufs, dst=dst, group=self._group)
        return torch.cat([b[:r] for b, r in zip(bufs, rows)])

    def _scatter(self, params: list[torch.Tensor]) -> None:
        from torch.distributed.tensor import DTensor, Replicate

        for p in params:
            if p.grad is None:
                continue
            local = p.to_local()
            proxy = self._proxies.get(id(p))
            owner = self._owner[id(p)]
            src = dist.get_global_rank(self._group, owner)
            rows = self._row_shards(p)
            if rows is not None:
                recv = local.new_empty((max(rows), *local.shape[1:]))
                chunks = None
                if proxy is not None:
                    chunks = [_padded(c, max(rows)) for c in proxy.data.split(rows)]
                dist.scatter(recv, scatter_list=chunks, src=src, group=self._group)
                local.copy_(recv[:local.shape[0]])
            else:
                buf = proxy.data if proxy is not None else torch.empty(p.shape, dtype=p.dtype, device=local.device)
                dist.broadcast(buf, src=src, group=self._group)
                full = DTensor.from_local(buf, p.device_mesh, [Replicate()] * p.device_mesh.ndim, run_check=False)
                local.copy_(full.redistribute(p.device_mesh, p.placements).to_local())
            if proxy is not None:  # keep only the state between steps, not a second copy of the weights
                proxy.grad = None
                proxy.data = torch.empty(0, dtype=p.dtype, device=local.device)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        if not self._sharded():
            return self.inner.state_dict()
        self._setup()
        saved = self._swap_in()
        try:
            sd = self.inner.state_dict()
        finally:
            self._swap_out(saved)
        return {_SHARDED: {"rank": self._rank, "world_size": dist.get_world_size(self._group), "state": sd}}

    def load_state_dict(self, state_dict: dict) -> None:
        if _SHARDED not in state_dict:
            if self._sharded():
                raise ConfigError("resume_from_checkpoint", "this optimizer state was saved without FSDP2",
                                  "resume with the launch setup the checkpoint was written with")
            return self.inner.load_state_dict(state_dict)
        self._setup()
        info = state_dict[_SHARDED]
        world = dist.get_world_size(self._group)
        if (info["rank"], info["world_size"]) != (self._rank, world):
            raise ConfigError("resume_from_checkpoint",
                              f"optimizer shard of rank {info['rank']} of {info['world_size']} loaded on rank "
                              f"{self._rank} of {world}", "resume with the same number of processes")
        # CombinedOptimizer's state_codec has already put the live schedule functions / enums in the groups.
        # torch casts loaded state to each param's dtype/device: the proxies carry both (not the size).
        saved = self._swap_in()
        try:
            self.inner.load_state_dict(info["state"])
        finally:
            self._swap_out(saved)

    def add_param_group(self, param_group: dict) -> None:
        self.inner.add_param_group(param_group)

    def __repr__(self) -> str:
        return f"GatheredOptimizer({type(self.inner).__name__})"


def gather_matrix_optimizers(name: str, subs: dict[str, torch.optim.Optimizer]) -> dict:
    """``subs`` with the hidden sub-optimizer of a matrix method wrapped in ``GatheredOptimizer``."""
    if name not in GATHERED:
        return subs
    return {k: GatheredOptimizer(o) if k == "hidden" else o for k, o in subs.items()}


def _tensor_bytes(obj: Any, seen: set) -> int:
    if isinstance(obj, torch.Tensor):
        t = obj.to_local() if is_sharded(obj) else obj
        # Storage address, not id(): to_local() returns temporaries whose ids get reused.
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel())
        if t.numel() and key in seen:
            return 0
        seen.add(key)
        return t.numel() * t.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return _tensor_bytes(vars(obj), seen)
    return 0


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of optimizer state held by this rank (a DTensor counts its local shard)."""
    subs = getattr(optimizer, "optimizers", None) or {"": optimizer}
    seen: set = set()
    return sum(_tensor_bytes(dict(o.state), seen) for o in subs.values())


def _to_local(obj: Any) -> Any:
    if is_sharded(obj):
        return obj.to_local()
    if isinstance(obj, dict):
        return {k: _to_local(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_local(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_local(v) for v in obj)
    return obj


def sharded_state_dict(optimizer) -> dict:
    """This rank's part of ``optimizer``'s state, tensors only (DTensor state as local shards)."""
    return _to_local(optimizer.state_dict())


def load_sharded_state_dict(optimizer, state_dict: dict) -> None:
    """Inverse of ``sharded_state_dict`` on the same number of ranks: local shards become DTensors again
    for the optimizers that run on shards (AdamW), laid out like their parameter."""
    from torch.distributed.tensor import DTensor

    optimizer.load_state_dict(state_dict)
    subs = getattr(optimizer, "optimizers", None) or {"": optimizer}
    for o in subs.values():
        if isinstance(o, GatheredOptimizer):
            continue
        for p, st in o.state.items():
            if not is_sharded(p):
                continue
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and not is_sharded(v) and v.shape == p.to_local().shape and v.dim():
                    st[k] = DTensor.from_local(v, p.device_mesh, p.placements, shape=p.shape, stride=p.stride())
