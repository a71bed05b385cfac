"""The plan of a study, before anything runs: per run parameters, tokens, steps, training FLOPs (6ND),
GPU-hours at a stated MFU, weight + gradient + optimizer-state memory, disk for checkpoints and token
shards, and the totals; budgets the data cannot supply are refused.

Only arithmetic on shapes: models are built on the meta device (no memory, no init), optimizer
states are counted from the state each optimizer keeps per hidden matrix (fp32).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .config import RunSpec, StudyConfig

__all__ = ["PlanOptions", "state_floats", "model_shapes", "study_budget_tokens", "study_plan", "format_plan",
           "corpus_token_bound"]

FP32 = 4


@dataclass(kw_only=True)
class PlanOptions:
    mfu: float = field(default=0.4, metadata={"help": "Model FLOPs utilisation assumed for GPU-hours."})
    gpu_tflops: float = field(default=989.0, metadata={
        "help": "Peak dense bf16 TFLOP/s of one GPU (H100 SXM: 989; A100: 312; H200: 989)."})
    world_size: int = field(default=1, metadata={"help": "Devices per run (sets sequences per step)."})

    def __post_init__(self):
        if not 0 < self.mfu <= 1:
            raise ConfigError("mfu", f"must be in (0, 1], got {self.mfu}", "use e.g. 0.4")
        if not self.gpu_tflops > 0:
            raise ConfigError("gpu_tflops", f"must be positive, got {self.gpu_tflops}", "use e.g. 989")
        if self.world_size < 1:
            raise ConfigError("world_size", f"must be >= 1, got {self.world_size}", "use e.g. 16")


def _shampoo_factors(shape: tuple[int, ...], lim: int) -> int:
    """Values of the factor + inverse-root pair of every block (dims cut at ``lim``; size-1 dims dropped)."""
    dims = [d for d in shape if d != 1] or [1]
    splits = [[lim] * (d // lim) + ([d % lim] if d % lim else []) for d in dims]
    total = 0
    for k, sk in enumerate(splits):
        others = math.prod(len(sj) for j, sj in enumerate(splits) if j != k)
        total += 2 * others * sum(b * b for b in sk)
    return total


def state_floats(optimizer: str, group: str, shape: tuple[int, ...], hp: dict) -> int:
    """fp32 values of optimizer state one parameter keeps. Hidden matrices get the optimizer under
    study; embeddings and gains the side optimizer (AdamW; Scion's own momentum for its embedding) or, for
    PSGD/SOAP/Shampoo with ``side_optimizer="same"`` (the authors' routing, the default), the optimizer
    under study itself. Exact for all six (tests/test_study_plan.py counts the real states; Shampoo without
    ``merge_small_dims``)."""
    numel = math.prod(shape)
    same = optimizer in ("psgd", "soap", "shampoo") and hp.get("side_optimizer", "same") == "same"
    if group != "hidden" and not same or len(shape) < 1:
        return numel if optimizer == "scion" and group == "embed" else 2 * numel
    if optimizer == "shampoo":  # filtered gradient + graft accumulator (+ momentum) + factor and inverse root
        lim = hp.get("max_preconditioner_dim", 12288)
        moments = (hp.get("betas", (0.95, 0.95))[0] > 0) + (hp.get("grafting", "adam") in ("adam", "rmsprop", "adagrad"))
        return (moments + (hp.get("momentum", 0.0) > 0)) * numel + _shampoo_factors(shape, lim)
    if len(shape) < 2:  # SOAP without 1-D preconditioning: two moments; PSGD: momentum + diagonal factor
        return 2 * numel
    m, n = shape[0], math.prod(shape[1:])
    if optimizer == "adamw":
        return 2 * numel
    if optimizer in ("muon", "scion"):
        return numel  # momentum
    if optimizer == "psgd":  # momentum + one Kronecker factor per side (dense up to max_size_triangular)
        lim = hp.get("max_size_triangular", 12288)
        return numel + sum(d * d if d <= lim else d for d in (m, n))
    if optimizer == "soap":  # Adam moments in the rotated basis + factor and eigenbasis per side
        lim = hp.get("max_precondition_dim", 12288)
        return 2 * numel + sum(2 * d * d if d <= lim else 0 for d in (m, n))
    raise ConfigError("optimizers", f"no state model for {optimizer!r}", "add it to hf_optquant/study/plan.py")


def model_shapes(size: str, vocab_size: int) -> dict[str, list[tuple[int, ...]]]:
    """``{"hidden"|"embed"|"gain": [shape, ...]}`` as the optimizers route them."""
    from ..models import meta_model
    from ..optim import route_parameters

    model = meta_model(size, vocab_size=vocab_size)
    return {g: [tuple(p.shape) for p in ps] for g, ps in route_parameters(model).items()}


def _per_step(cfg: StudyConfig, world_size: int = 1) -> int:
    over = cfg.train_overrides or {}
    return over.get("per_device_train_batch_size", cfg.batch_size) * over.get("gradient_accumulation_steps", 1) \
        * world_size


def study_budget_tokens(cfg: StudyConfig, vocab_size: int, world_size: int = 1) -> dict[str, int]:
    """Training tokens of each size's runs: whole steps of ``tokens_per_param`` x parameters."""
    from ..trainer.job import budget_steps

    per_step = _per_step(cfg, world_size)
    out = {}
    for size in cfg.sizes:
        n = sum(math.prod(s) for ss in model_shapes(size, vocab_size).values() for s in ss)
        out[size] = budget_steps(cfg.tokens_per_param, n, per_step, cfg.block_size) * per_step * cfg.block_size
    return out


def corpus_token_bound(cfg: StudyConfig) -> tuple[int | None, str]:
    """An upper bound on the training tokens the corpus can give (a byte-level BPE gives at most one token
    per byte, plus one EOS per document, and every document costs at least one more byte on disk), or None."""
    if cfg.data.token_column:
        return None, "pre-tokenized: counted when read"
    if cfg.dataset == "ptb":
        from ..data.ptb import ptb_splits

        lines = ptb_splits()["train"]
        return sum(len(x.encode()) + 1 for x in lines), "ptb: bytes + one EOS per line"
    path = Path(cfg.dataset)
    if path.is_file() and path.suffix in (".txt", ".jsonl", ".json", ".csv"):
        return path.stat().st_size, "file size"
    return None, "streamed: counted when read"


def _vocab(cfg: StudyConfig) -> tuple[int, str]:
    tok_dir = Path(cfg.output_dir) / "tokenizer"
    name = cfg.tokenizer or (str(tok_dir) if (tok_dir / "tokenizer.json").exists() else None)
    if name:
        try:
            from transformers import AutoTokenizer

            # Cached files only: a plan downloads nothing (an unreachable Hub would cost ~30 s of retries);
            # vocab_size stands in until the tokenizer is cached.
            return len(AutoTokenizer.from_pretrained(name, local_files_only=True)), f"tokenizer {name}"
        except (OSError, ValueError):
            pass
    return cfg.vocab_size, "vocab_size"


def _run_row(cfg: StudyConfig, spec: RunSpec, shapes, tokens: int, per_step: int, opts: PlanOptions) -> dict:
    from ..optim import optimizer_hparams

    n = sum(math.prod(s) for ss in shapes.values() for s in ss)
    hp = optimizer_hparams(spec.optimizer, **cfg.optimizer_kwargs.get(spec.optimizer, {}))
    state = FP32 * sum(state_floats(spec.optimizer, g, s, hp) for g, ss in shapes.items() for s in ss)
    steps = tokens // (per_step * cfg.block_size)
    flops = 6 * n * tokens
    over = cfg.train_overrides or {}
    keep = over.get("save_total_limit", 1) or 1
    every = over.get("eval_steps", cfg.eval_every)
    snapshots = steps // every if spec.precision == "full" and cfg.common_loss is None else 0
    # checkpoints (weights + optimizer state), the final model, and a model-only snapshot per evaluation
    disk = keep * (FP32 * n + state) + FP32 * n + snapshots * FP32 * n
    return {"run_id": spec.run_id, "optimizer": spec.optimizer, "size": spec.size, "params": n, "tokens": tokens,
            "steps": steps, "flops": flops, "gpu_hours": flops / (opts.gpu_tflops * 1e12 * opts.mfu) / 3600,
            "weights_grads_bytes": 2 * FP32 * n, "state_bytes": state, "snapshots": snapshots, "disk_bytes": disk}


def study_plan(cfg: StudyConfig, opts: PlanOptions | None = None) -> dict:
    """The plan as a dict; raises ``ConfigError`` when the corpus cannot supply the largest budget."""
    from .runs import all_runs

    opts = opts or PlanOptions()
    vocab, vocab_source = _vocab(cfg)
    per_step = _per_step(cfg, opts.world_size)
    shapes = {s: model_shapes(s, vocab) for s in cfg.sizes}
    budgets = study_budget_tokens(cfg, vocab, opts.world_size)
    rows = [_run_row(cfg, spec, shapes[spec.size], budgets[spec.size], per_step, opts) for spec in all_runs(cfg)]
    need = max(budgets.values())
    bound, how = corpus_token_bound(cfg)
    if bound is not None and bound < need and not cfg.data.allow_epochs:
        big = max(budgets, key=budgets.get)
        raise ConfigError("tokens_per_param", f"{big} needs {need:,} training tokens but {cfg.dataset!r} has at "
                          f"most {bound:,} ({how})", "lower tokens_per_param, use a larger corpus, or set "
                          "data.allow_epochs: true to repeat it")
    itemsize = 2 if vocab <= 1 << 16 else 4
    shard_bytes = itemsize * (math.ceil(need * 1.01) + (cfg.max_eval_tokens or 0))
    totals = {k: sum(r[k] for r in rows) for k in ("flops", "gpu_hours", "disk_bytes")}
    totals["shard_bytes"] = shard_bytes
    totals["all_disk_bytes"] = totals["disk_bytes"] + shard_bytes
    return {"runs": rows, "totals": totals, "vocab_size": vocab, "vocab_source": vocab_source,
            "sequences_per_step": per_step, "options": vars(opts), "corpus_bound": bound, "corpus_bound_how": how,
            "train_tokens_needed": need}


def _si(x: float, unit: str = "") -> str:
    for div, p in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{p}{unit}"
    return f"{x:.3g}{unit}"


def _gb(b: float) -> str:
    for p, unit in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if b >= 2**p:
            return f"{b / 2**p:.3g} {unit}"
    return f"{b:.0f} B"


def format_plan(plan: dict) -> str:
    o = plan["options"]
    head = ["run", "params", "tokens", "steps", "FLOPs (6ND)", "GPU-h", "weights+grads", "opt state",
            "ckpt disk"]
    rows = [[r["run_id"], _si(r["params"]), _si(r["tokens"]), str(r["steps"]), _si(r["flops"]),
             f"{r['gpu_hours']:.3g}", _gb(r["weights_grads_bytes"]), _gb(r["state_bytes"]),
             _gb(r["disk_bytes"]) + (f" ({r['snapshots']} snapshots)" if r["snapshots"] else "")]
            for r in plan["runs"]]
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    t = plan["totals"]
    out = [f"# plan: {len(rows)} runs, {plan['sequences_per_step']} sequences/step on {o['world_size']} device(s), "
           f"vocab {plan['vocab_size']} ({plan['vocab_source']}); GPU-hours at {o['mfu']:.0%} MFU of "
           f"{o['gpu_tflops']:g} TFLOP/s; fp32 weights, grads and optimizer state",
           line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    bound = plan["corpus_bound"]
    out += ["", f"total training FLOPs: {_si(t['flops'])}   GPU-hours: {t['gpu_hours']:.4g}",
            f"disk: checkpoints {_gb(t['disk_bytes'])} + token shards {_gb(t['shard_bytes'])} "
            f"({_si(plan['train_tokens_needed'])} training tokens, read once) = {_gb(t['all_disk_bytes'])}",
            f"corpus: {'at most ' + _si(bound) + ' tokens' if bound is not None else 'size unknown'} "
            f"({plan['corpus_bound_how']})"]
    return "\n".join(out)
