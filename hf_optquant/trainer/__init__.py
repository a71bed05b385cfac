"""Trainer integration: arguments, trainer, WSD schedule, Common-Loss checkpoint."""
from .args import OptQuantTrainingArguments
from .common_loss_callback import COMMON_LOSS_DIR, CommonLossCallback
from .schedule import WSDSchedule, get_wsd_scheduler, wsd_multiplier
from .trainer import OptQuantTrainer, OptQuantTrainerMixin

__all__ = [
    "OptQuantTrainingArguments",
    "OptQuantTrainer",
    "OptQuantTrainerMixin",
    "CommonLossCallback",
    "COMMON_LOSS_DIR",
    "WSDSchedule",
    "wsd_multiplier",
    "get_wsd_scheduler",
]
