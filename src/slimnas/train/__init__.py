"""Training: the `Trainer` loop, its steps (plain, sandwich rule), losses, checkpoints, BN
recalibration.

trainer = Trainer(supernet, loader, step_fn=sandwich_step(supernet, generator=g),
                  lr=0.1, epochs=30, run_dir="runs/a", checkpoint_every=500)
trainer.fit()                        # or Trainer(..., resume=True).fit() after a crash
score = evaluate(supernet, test_loader)
"""

from slimnas.train.bn import buffers_kept, recalibrate_bn
from slimnas.train.checkpoint import (
    Checkpoint,
    checkpoint_dirs,
    latest,
    load_checkpoint,
    load_latest,
    save_checkpoint,
)
from slimnas.train.evaluate import Evaluation, evaluate
from slimnas.train.losses import cross_entropy, kd_loss, soft_cross_entropy
from slimnas.train.metrics_log import MetricsLog, read_metrics
from slimnas.train.optim import build_optimizer, build_schedule, lr_factor
from slimnas.train.rng import rng_state, set_rng_state
from slimnas.train.slimmable import SandwichStep, sandwich_step
from slimnas.train.step import StepFn, kd_step, plain_step
from slimnas.train.trainer import Trainer, TrainingError

__all__ = [
    "Checkpoint",
    "Evaluation",
    "MetricsLog",
    "SandwichStep",
    "StepFn",
    "Trainer",
    "TrainingError",
    "build_optimizer",
    "build_schedule",
    "checkpoint_dirs",
    "cross_entropy",
    "evaluate",
    "kd_loss",
    "kd_step",
    "latest",
    "load_checkpoint",
    "load_latest",
    "lr_factor",
    "plain_step",
    "read_metrics",
    "buffers_kept",
    "recalibrate_bn",
    "rng_state",
    "sandwich_step",
    "save_checkpoint",
    "set_rng_state",
    "soft_cross_entropy",
]
