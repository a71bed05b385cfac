"""``run.json``: what a training run was and how it ended (format in docs/DEVELOPING.md)."""
from __future__ import annotations

import platform
from importlib import metadata

from ..models import count_parameters

__all__ = ["library_versions", "run_record"]

_LIBS = ("hf_optquant", "torch", "transformers", "accelerate", "pytorch_optimizer", "compressed-tensors",
         "datasets", "peft")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in _LIBS:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def _last(history: list[dict], key: str):
    for entry in reversed(history):
        if key in entry:
            return entry[key]
    return None


def run_record(trainer, **extra) -> dict:
    from ..optim import optimizer_hparams
    from ..qat.config import qat_record

    args = trainer.args
    model = trainer.model
    history = list(trainer.state.log_history)
    cl = trainer.common_loss_callback.record() if trainer.common_loss_callback else None
    # Last logged loss; with logging_steps past the run's end, the run's mean (train_loss).
    train_loss = _last(history, "loss")
    if train_loss is None:
        train_loss = _last(history, "train_loss")
    rec = {
        "optimizer": args.optimizer,
        "optimizer_kwargs": args.optimizer_kwargs,
        "optimizer_hparams": optimizer_hparams(args.optimizer, lr=args.learning_rate, **args.optimizer_kwargs),
        "learning_rate": args.learning_rate,
        "n_params": count_parameters(model),
        "n_params_non_embedding": count_parameters(model, non_embedding=True),
        "global_step": trainer.state.global_step,
        "tokens_seen": trainer.tokens_seen(),
        "final_train_loss": train_loss,
        "final_eval_loss": _last(history, "eval_loss"),
        "qat": qat_record(trainer.qat_config),
        "common_loss": cl,
        "versions": library_versions(),
        "config": args.to_dict(),
        "log_history": history,
    }
    rec.update(trainer.run_info)
    rec.update(extra)
    return rec
