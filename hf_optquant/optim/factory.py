"""The six optimizers for a plain ``transformers.Trainer`` (or any subclass) through its own
``optimizer_cls_and_kwargs`` argument, no subclassing needed::

    Trainer(model=model, args=TrainingArguments(...), train_dataset=ds,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs("muon"))

transformers treats a first element that is not a ``torch.optim.Optimizer`` class as an optimizer
*factory*: ``Trainer.create_optimizer`` calls ``factory()(model, **kwargs)`` with the model it trains,
which is what the study's routing needs (parameter names and shapes, not the Trainer's decay groups).
The schedule stays the Trainer's (``lr_scheduler_type``); WSD, QAT and Common Loss come with
``OptQuantTrainerMixin``.
"""
from __future__ import annotations

import torch

from .builders import build_optimizer, optimizer_hparams

__all__ = ["OptQuantOptimizerFactory", "optimizer_cls_and_kwargs"]


class OptQuantOptimizerFactory:
    """Called by ``Trainer.create_optimizer`` as ``OptQuantOptimizerFactory()(model, **kwargs)``."""

    def __call__(self, model: torch.nn.Module, *, optimizer: str, lr: float | None = None,
                 weight_decay: float | None = None, **optimizer_kwargs) -> torch.optim.Optimizer:
        return build_optimizer(optimizer, model, lr=lr, weight_decay=weight_decay, **optimizer_kwargs)


def optimizer_cls_and_kwargs(optimizer: str = "adamw", *, learning_rate: float | None = None,
                             weight_decay: float | None = None, **optimizer_kwargs) -> tuple[type, dict]:
    """``(factory, kwargs)`` for ``Trainer(optimizer_cls_and_kwargs=...)``: optimizer ``optimizer`` with its
    preset, ``learning_rate`` for the hidden matrices and ``weight_decay`` (default: the preset's), and
    preset overrides. ``TrainingArguments.learning_rate``/``weight_decay``/``optim`` are not used.

    Validated now (unknown optimizer or key: ``ConfigError``), not when training starts.
    """
    extra = {} if weight_decay is None else {"weight_decay": weight_decay}
    hp = optimizer_hparams(optimizer, lr=learning_rate, **optimizer_kwargs, **extra)
    kwargs = {"optimizer": optimizer, "lr": float(hp["lr"]), "weight_decay": float(hp["weight_decay"]),
              **optimizer_kwargs}
    return OptQuantOptimizerFactory, kwargs
