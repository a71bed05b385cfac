"""A study config is checked when it is loaded, by the config classes its stages use.

Every run's ``TrainJobArguments`` and ``OptQuantTrainingArguments`` are built as the training stage will
build them; ``QATConfig``/``PTQConfig`` are matched against each size's layers (built on the meta device: no
memory, no weights); the token budget is checked against ``eval_every``; evaluation tasks must be reachable.
So a typo in ``train_overrides`` or a group size that does not divide a layer fails in a second, with nothing
written, instead of after every run has trained.
"""
from __future__ import annotations

import os

from ..errors import ConfigError

__all__ = ["validate_study", "check_tasks_reachable"]


def _check_budget(cfg, size: str, n_params: int) -> None:
    """A budget that ends before the first evaluation leaves no Common-Loss snapshot."""
    from ..trainer.job import budget_steps

    over = cfg.train_overrides or {}
    per_step = over.get("per_device_train_batch_size", cfg.batch_size) * over.get("gradient_accumulation_steps", 1)
    every = over.get("eval_steps", cfg.eval_every)
    steps = budget_steps(cfg.tokens_per_param, n_params, per_step, cfg.block_size)
    if steps < every:
        raise ConfigError("tokens_per_param", f"{size} ({n_params:,} parameters) gets {steps} steps at "
                          f"{cfg.tokens_per_param} tokens/parameter, fewer than eval_every={every}, "
                          "so it is never evaluated and has no Common-Loss checkpoint",
                          f"raise tokens_per_param to at least "
                          f"{every * per_step * cfg.block_size / n_params:.3g} or lower eval_every")


def _check_quantizers(cfg, size: str, model) -> None:
    from ..ptq import target_linears
    from ..qat.prepare import find_targets

    if "qat" in cfg.precisions:
        try:
            find_targets(model, cfg.qat)
        except ConfigError as exc:
            raise ConfigError(exc.field, f"{exc.problem} (model size {size})", exc.fix) from None
    for i, pcfg in enumerate(cfg.ptq):
        try:
            linears = target_linears(model, targets=pcfg.scheme.targets, lm_head=pcfg.lm_head)
        except ConfigError as exc:
            raise ConfigError(f"ptq[{i}].{exc.field}", f"{exc.problem} (model size {size})", exc.fix) from None
        for name, lin in linears.items():
            try:
                pcfg.scheme.gran.check_divides(lin.in_features, f" of {name} at size {size}")
            except ConfigError as exc:
                raise ConfigError(f"ptq[{i}].granularity", exc.problem, exc.fix) from None


def _on_any_machine(targs: dict) -> dict:
    """The config is loaded wherever the study is planned or launched from (``--plan`` and ``--print-commands``
    on a login node without GPUs): the values are checked here, the hardware (bf16/fp16 need an accelerator)
    when each run trains on its node."""
    import torch

    if torch.cuda.is_available() or not (targs.get("bf16") is True or targs.get("fp16") is True):
        return targs
    return {**targs, "bf16": False, "fp16": False}


def _check_training(cfg) -> None:
    """Build each run's training arguments as the training stage will (one size: they differ only in dirs)."""
    from ..config import build_dataclasses
    from ..trainer import OptQuantTrainingArguments
    from ..trainer.job import TrainJobArguments
    from .config import RunSpec
    from .runs import train_arguments

    for size in cfg.sizes:
        job, _ = train_arguments(cfg, RunSpec(optimizer=cfg.optimizers[0], size=size, precision="full", lr=None))
        TrainJobArguments(**job)
    for opt in cfg.optimizers:
        for precision in cfg.precisions:
            spec = RunSpec(optimizer=opt, size=cfg.sizes[0], precision=precision, lr=None)
            grid = cfg.lr_grid.get(opt) or [None]
            # A QAT run's lr is the sweep's winner, known after training: any grid value stands for it here.
            _, targs = train_arguments(cfg, spec, lr=grid[0])
            build_dataclasses((OptQuantTrainingArguments,), {}, _on_any_machine(targs), where="train_overrides")


def check_tasks_reachable(cfg) -> None:
    """Tasks that are not in ``task_include_path`` download their data from the Hub: refuse them offline.
    An environment check, not part of the config's validity: every study command but ``--plan`` (which
    evaluates nothing and is meant for login nodes) runs it before it writes anything; the task names are
    checked against the harness's index before training, in the pipeline."""
    if not cfg.tasks:
        return
    from huggingface_hub import constants

    local: set[str] = set()
    if cfg.task_include_path:
        from ..eval.harness import task_manager

        try:
            local = set(task_manager(list(cfg.tasks), cfg.task_include_path,
                                     include_field="task_include_path").all_tasks)
        except ConfigError:
            local = set()
    remote = [t for t in cfg.tasks if t not in local]
    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_DATASETS_OFFLINE", "").lower() in ("1", "true", "yes")
    if remote and offline:
        raise ConfigError("tasks", f"{remote} are not local lm-eval tasks and their datasets cannot be downloaded "
                          "offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set)",
                          "set task_include_path to a directory of local task YAMLs, go online, or use tasks: []")


def validate_study(cfg) -> None:
    from ..models import count_parameters, meta_model

    _check_training(cfg)
    for size in cfg.sizes:
        model = meta_model(size, vocab_size=cfg.vocab_size)
        _check_budget(cfg, size, count_parameters(model))
        _check_quantizers(cfg, size, model)
