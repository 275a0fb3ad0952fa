"""Optimizers and learning-rate schedules of the Trainer.

- SGD with (Nesterov) momentum, the CIFAR/ImageNet recipe of the papers slimnas reimplements,
  and AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", arXiv 1711.05101).
- Weight decay optionally skips BatchNorm weights and every bias: decaying them only fights
  BatchNorm's scale invariance (the "no bias decay" trick of Goyal et al. 2017, arXiv
  1706.02677, and of the US-Nets configs). They are recognised as the 1-D parameters.
- Per-step schedules: a linear warm-up over ``warmup_steps`` (Goyal et al. 2017, §2.2), then
  cosine decay to zero (Loshchilov & Hutter, "SGDR", arXiv 1608.03983) or linear decay to zero.
  They are `LambdaLR`s of a function of the step, whose state is plain numbers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from slimnas.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "linear", "constant")


def parameter_groups(
    model: nn.Module, weight_decay: float, no_decay_bn_bias: bool = True
) -> list[dict]:
    """Trainable parameters in groups: decayed, and (optionally) 1-D ones without decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not no_decay_bn_bias or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    *,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    no_decay_bn_bias: bool = True,
) -> torch.optim.Optimizer:
    """An ``"sgd"`` or ``"adamw"`` optimizer over ``model``'s trainable parameters."""
    groups = parameter_groups(model, weight_decay, no_decay_bn_bias)
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    if lr <= 0:
        raise ConfigError(f"lr must be positive, got {lr}")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def lr_factor(step: int, kind: str, warmup_steps: int, total_steps: int) -> float:
    """The multiplier of the base learning rate for ``step`` (0-based, the step about to run)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def build_schedule(
    optimizer: torch.optim.Optimizer, kind: str, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule: linear warm-up, then ``"cosine"``, ``"linear"`` or ``"constant"``."""
    if kind not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {kind!r}")
    if warmup_steps < 0:
        raise ConfigError(f"warmup_steps must be non-negative, got {warmup_steps}")

    # A plain function (not a callable object), so that the scheduler's state holds no copy of
    # these settings: a resumed run uses the settings it is given.
    def factor(step: int) -> float:
        return lr_factor(step, kind, warmup_steps, total_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
