"""Runs a clean and a quantized model side by side, stage by stage, and accumulates ABC terms per module.

A *stage* is a (clean, quantized) pair of modules applied in sequence to the hidden state: the decoder
blocks, then the final norm and the LM head. Within a stage, hooks on the chosen sub-modules record each
module's clean input and output during the clean pass; during the quantized pass they compute the two
counterfactuals f(hq) = clean(hq_in) and fq(h) = quant(h_in). Only one stage's records of one batch are alive
at a time, so memory stays at a few activations of one block whatever the depth.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..models.capture import hidden_of, with_hidden
from .decomposition import GainAccumulator, _dots, abc_from_sums, abc_sums
from .outlier_stats import OUTLIER_SITES, OutlierAccumulator, outlier_batch_stats

__all__ = ["Stage", "ABCEngine", "outlier_sites"]


@dataclass
class Stage:
    name: str
    clean: torch.nn.Module
    quant: torch.nn.Module
    kwargs: dict = field(default_factory=dict)  # extra inputs (masks, rotary embeddings), the same for both
    residual: bool = False  # its clean input is a point of the residual stream (a block's input, the final norm's)


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    raise TypeError(f"cannot find the output tensor in {type(out).__name__}")


def outlier_sites(outliers) -> tuple[str, ...]:
    """The sites an ``outliers`` setting measures: ``residual``, ``linear``, ``both`` or ``none`` (True is
    ``residual``, False ``none``)."""
    if outliers is True:
        outliers = "residual"
    elif outliers is False or outliers is None:
        outliers = "none"
    if outliers not in OUTLIER_SITES:
        raise ValueError(f"outliers must be one of {OUTLIER_SITES}, got {outliers!r}")
    return {"residual": ("residual",), "linear": ("linear",), "both": ("residual", "linear"), "none": ()}[outliers]


def _doubled(obj, b: int):
    """A stage's extra inputs for a batch of 2b rows: tensors of two or more dims whose first is the batch
    are repeated; others (a batch of one broadcasts: rotary tables, a causal mask; 1-D cache positions) are
    left as they are. Anything else (a cache object) raises ValueError: the caller runs four passes."""
    if isinstance(obj, torch.Tensor):
        return torch.cat([obj, obj]) if b > 1 and obj.dim() >= 2 and obj.shape[0] == b else obj
    if isinstance(obj, dict):
        return {k: _doubled(v, b) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_doubled(v, b) for v in obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ValueError(f"cannot double an extra input of type {type(obj).__name__}")


class ABCEngine:
    """Accumulates, per module name (in forward order): ABC sums, gain sums for linears, and outlier stats of
    the clean model's residual stream (the inputs of stages marked ``residual``) and/or linear inputs."""

    def __init__(self, *, norm: str = "tensor", select=None, outliers="residual"):
        self.norm = norm
        # select(name, module, is_stage) -> whether the module gets the full ABC treatment
        self.select = select or (lambda name, module, is_stage: True)
        self.sites = outlier_sites(outliers)
        self.residual_acc: dict[str, OutlierAccumulator] = {}
        self.stage_R: dict[str, list[float]] = {}  # stage output: [|hq - h|^2, |h|^2], no counterfactuals
        self.order: list[str] = []
        self.sums: dict[str, dict[str, float]] = {}
        self.gains: dict[str, GainAccumulator] = {}
        self.outlier_acc: dict[str, OutlierAccumulator] = {}
        self._busy = False
        self._batched = True  # the stage-only fast path (see _run_stage_batched) until it fails once
        self._clean_records: dict[str, tuple] = {}

    # ----------------------------------------------------------------------------- hooks
    def _clean_pre(self, name):
        def hook(module, args, kwargs):
            if not self._busy:
                self._clean_records[name] = [args, kwargs, None]
        return hook

    def _clean_post(self, name):
        def hook(module, args, kwargs, output):
            if not self._busy:
                self._clean_records[name][2] = _first_tensor(output).detach()
        return hook

    def _outlier_pre(self, name, seen):
        def hook(module, args, kwargs):
            if self._busy:
                return
            x = hidden_of(args, kwargs)
            # q/k/v (and gate/up) receive the very same tensor: compute its statistics once.
            hit = seen.get(id(x))
            if hit is None or hit[0] is not x or hit[1] != x._version:
                hit = seen[id(x)] = (x, x._version, outlier_batch_stats(x))
            self.outlier_acc.setdefault(name, OutlierAccumulator()).add(hit[2])
        return hook

    def _quant_pre(self, name, store):
        def hook(module, args, kwargs):
            if not self._busy:
                store[name] = (args, kwargs)
        return hook

    def _quant_post(self, name, clean_module, store):
        def hook(module, args, kwargs, output):
            if self._busy or name not in self._clean_records:
                return
            c_args, c_kwargs, f_h = self._clean_records.pop(name)
            q_args, q_kwargs = store.pop(name)  # the raw input, before the module's own activation quant
            h_in, hq_in = hidden_of(c_args, c_kwargs), hidden_of(q_args, q_kwargs)
            fq_hq = _first_tensor(output).detach()
            self._busy = True
            try:
                ca, ck = with_hidden(c_args, c_kwargs, hq_in)
                f_hq = _first_tensor(clean_module(*ca, **ck)).detach()
                qa, qk = with_hidden(q_args, q_kwargs, h_in)
                fq_h = _first_tensor(module(*qa, **qk)).detach()
            finally:
                self._busy = False
            self._accumulate(name, clean_module, module, f_h, f_hq, fq_h, fq_hq, h_in, hq_in)
        return hook

    def _accumulate(self, name, clean_module, module, f_h, f_hq, fq_h, fq_hq, h_in, hq_in) -> None:
        s = abc_sums(f_h, f_hq, fq_h, fq_hq, h_in, hq_in, norm=self.norm)
        if name not in self.sums:
            self.order.append(name)
            self.sums[name] = dict.fromkeys(s, 0.0)
        for k, v in s.items():
            self.sums[name][k] += v
        if isinstance(module, torch.nn.Linear) and isinstance(clean_module, torch.nn.Linear):
            if name not in self.gains:
                self.gains[name] = GainAccumulator(clean_module.weight, module.weight)
            self.gains[name].update(h_in, hq_in)

    # ----------------------------------------------------------------------------- passes
    def _targets(self, stage: Stage):
        qmods = dict(stage.quant.named_modules())
        out = []
        for sub, cm in stage.clean.named_modules():
            name = f"{stage.name}.{sub}" if sub else stage.name
            if self.select(name, cm, not sub):
                out.append((name, cm, qmods[sub]))
        return out

    def _run_stage_batched(self, stage: Stage, h: torch.Tensor, hq: torch.Tensor):
        """The stage alone is an ABC target: its four passes as two forwards of twice the batch, clean on
        [h, hq] and quantized on [hq, h]. Rows are independent (activation quantization is per token), so
        the outputs are those of four separate passes up to the summation order of the matmuls; on CPU a
        twice-as-large batch costs ~10% less per token and halves the Python work. None when the stage's
        extra inputs cannot be given twice the batch (the caller then runs four passes)."""
        b = h.shape[0]
        try:
            kw = _doubled(stage.kwargs, b)
            both = _first_tensor(stage.clean(torch.cat([h, hq]), **kw)).detach()
            both_q = _first_tensor(stage.quant(torch.cat([hq, h]), **kw)).detach()
        except (RuntimeError, ValueError, IndexError):
            return None
        if both.shape[0] != 2 * b or both_q.shape[0] != 2 * b:
            return None
        f_h, f_hq, fq_hq, fq_h = both[:b], both[b:], both_q[:b], both_q[b:]
        self._accumulate(stage.name, stage.clean, stage.quant, f_h, f_hq, fq_h, fq_hq, h, hq)
        return f_h, fq_hq

    @torch.no_grad()
    def run_stage(self, stage: Stage, h: torch.Tensor, hq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean pass on ``h``, then quantized pass on ``hq``; returns both outputs."""
        if "residual" in self.sites and stage.residual:  # the stage's clean input is already here: no hook
            self.residual_acc.setdefault(stage.name, OutlierAccumulator()).update(h)
        targets = self._targets(stage)
        if self._batched and [t[0] for t in targets] == [stage.name] and "linear" not in self.sites:
            res = self._run_stage_batched(stage, h, hq)
            if res is not None:
                return self._stage_error(stage, *res)
            self._batched = False  # this architecture's extra inputs do not double: four passes from now on
        store: dict[str, tuple] = {}
        seen: dict[int, tuple] = {}  # this stage's linear inputs already measured (kept alive for the stage)
        handles = []
        try:
            if "linear" in self.sites:
                for sub, cm in stage.clean.named_modules():
                    if isinstance(cm, torch.nn.Linear):
                        name = f"{stage.name}.{sub}" if sub else stage.name
                        hook = self._outlier_pre(name, seen)
                        handles.append(cm.register_forward_pre_hook(hook, with_kwargs=True, prepend=True))
            for name, cm, qm in targets:
                # prepend: record the raw input before any activation-quantization pre-hook rewrites it
                handles.append(cm.register_forward_pre_hook(self._clean_pre(name), with_kwargs=True, prepend=True))
                handles.append(cm.register_forward_hook(self._clean_post(name), with_kwargs=True))
                handles.append(qm.register_forward_pre_hook(self._quant_pre(name, store), with_kwargs=True,
                                                            prepend=True))
                handles.append(qm.register_forward_hook(self._quant_post(name, cm, store), with_kwargs=True))
            out = _first_tensor(stage.clean(h, **stage.kwargs))
            out_q = _first_tensor(stage.quant(hq, **stage.kwargs))
        finally:
            for hd in handles:
                hd.remove()
            self._clean_records.clear()
        return self._stage_error(stage, out, out_q)

    def _stage_error(self, stage: Stage, out: torch.Tensor, out_q: torch.Tensor):
        e = out_q - out
        acc = self.stage_R.setdefault(stage.name, [0.0, 0.0])
        acc[0] += float(_dots(e, e).sum())
        acc[1] += float(_dots(out, out).sum())
        return out, out_q

    # ----------------------------------------------------------------------------- results
    def table(self) -> list[dict]:
        rows = []
        for name in self.order:
            row = {"module": name, **abc_from_sums(self.sums[name])}
            if name in self.gains:
                row.update(self.gains[name].factors())
            rows.append(row)
        return rows

    def stage_table(self) -> list[dict]:
        """R of every stage's output (tensor norm), in forward order."""
        return [{"stage": k, "R": v[0] / v[1] if v[1] else float("nan")} for k, v in self.stage_R.items()]

    def outlier_table(self, site: str = "linear") -> list[dict]:
        """Per-site rows in forward order: ``residual`` (named by the stage whose input it is) or ``linear``."""
        acc = self.residual_acc if site == "residual" else self.outlier_acc
        return [{"module": k, "site": site, **v.summary()} for k, v in acc.items()]
