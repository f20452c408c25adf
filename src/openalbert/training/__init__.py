"""Training machinery shared by pretraining and fine-tuning: optimizers, schedule, the loop."""

from openalbert.training.loop import (
    ResumableSampler,
    TrainConfig,
    Trainer,
    TrainResult,
    default_collate,
    latest_checkpoint,
    list_checkpoints,
    plot_curves,
    setup_distributed,
    steps_per_epoch,
    train,
)
from openalbert.training.optim import (
    Lamb,
    build_optimizer,
    build_schedule,
    linear_schedule,
    param_groups,
    polynomial_schedule,
)

__all__ = [
    "Lamb",
    "ResumableSampler",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_optimizer",
    "build_schedule",
    "default_collate",
    "latest_checkpoint",
    "linear_schedule",
    "list_checkpoints",
    "param_groups",
    "plot_curves",
    "polynomial_schedule",
    "setup_distributed",
    "steps_per_epoch",
    "train",
]
