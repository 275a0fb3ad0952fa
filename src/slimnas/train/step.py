"""The step protocol: what a method gives the `Trainer`, the plain classification step and the
knowledge-distillation step.

A step is called as ``step_fn(model, batch, backward)`` with the gradients zeroed (and inside
autocast under mixed precision) and returns ``(loss, metrics)``. It may do its backward in one
of two ways:

- **let the Trainer do it**: never call ``backward`` and return the loss with its graph; the
  Trainer calls ``backward(loss)``. This is `plain_step`.
- **do it itself**: call ``backward(partial_loss)`` once per part and return the sum of the parts
  (detached or not), used only for logging and the finiteness check. The sandwich rule does this,
  one forward and backward per subnet, so that only one subnet's activations are alive at a time
  and the gradients accumulate (`slimnas.train.slimmable`).

The Trainer tells the two apart by whether ``backward`` was called during the step: if it was,
the returned loss is not backpropagated again. A step must use this callback rather than
``loss.backward()``: it checks that the loss is finite *before* any gradient is touched (raising
`TrainingError`), runs the backward outside autocast and applies the float16 loss scale.

``metrics`` maps names to floats or 0-d tensors; they become columns of ``metrics.csv``. A step
that holds state of its own (a sampling generator) exposes ``state_dict()`` and
``load_state_dict(state)`` returning and taking JSON-able values; checkpoints carry it.

`kd_step` trains the model on a fixed teacher's outputs with Hinton's loss (`kd_loss`; Hinton,
Vinyals, Dean, "Distilling the Knowledge in a Neural Network", arXiv 1503.02531), as TAS
("Network Pruning via Transformable Architecture Search", Dong & Yang, arXiv 1905.09717, §3.3)
retrains the pruned network with the unpruned one as teacher (α = 0.9, T = 4, our defaults). The
teacher runs on every batch, so that it sees exactly the (augmented) images the student sees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from slimnas.errors import ConfigError
from slimnas.train.losses import cross_entropy, kd_loss

Backward = Callable[[torch.Tensor], None]
Metrics = dict[str, float | torch.Tensor]


class StepFn(Protocol):
    def __call__(
        self, model: nn.Module, batch: Any, backward: Backward
    ) -> tuple[torch.Tensor, Metrics]: ...


def top1(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose highest logit is the target, as a 0-d tensor."""
    return (logits.argmax(dim=1) == targets).float().mean()


def plain_step(label_smoothing: float = 0.0) -> StepFn:
    """Ordinary classification: ``(images, labels)`` batches, label-smoothed cross-entropy.

    Metrics: ``acc`` (top-1 on the batch).
    """

    def step(model: nn.Module, batch: Any, backward: Backward) -> tuple[torch.Tensor, Metrics]:
        images, labels = batch
        logits = model(images)
        loss = cross_entropy(logits, labels, label_smoothing)
        return loss, {"acc": top1(logits.detach(), labels)}

    return step


def kd_step(teacher: nn.Module, alpha: float = 0.9, temperature: float = 4.0) -> StepFn:
    """Knowledge distillation from ``teacher``: ``(images, labels)`` batches, `kd_loss`.

    The student, the model the Trainer passes in, is trained on
    ``(1 − α)·CE(s, y) + α·T²·KL(softmax(t/T) ‖ softmax(s/T))``. The teacher runs under
    ``torch.no_grad()`` in eval mode (BatchNorm on its running statistics, no dropout); each of
    its modules gets its own training flag back after the forward, so that neither its weights
    nor its buffers change.

    Args:
        teacher: any model mapping the images to logits of the student's classes; a `Supernet`
            runs at the arch it has active, so activate its max arch first (``teacher.activate(
            teacher.max_arch())``). Keep it on the batches' device (the Trainer moves nothing),
            and leave it out of the optimizer: the Trainer builds its optimizer from the
            student's parameters only, so the teacher is never updated.
        alpha: weight of the soft (teacher) term, in ``[0, 1]``; 0 is plain cross-entropy.
        temperature: softening ``T > 0`` of both distributions.

    Metrics: ``acc`` (top-1 of the student on the batch) and ``loss_ce`` (the student's plain
    cross-entropy on the labels, for logging; the trained loss is the returned one).

    Raises:
        ConfigError: ``alpha`` is outside ``[0, 1]`` or ``temperature`` is not a finite
            positive number (checked here, before any training).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"kd alpha must be in [0, 1], got {alpha}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ConfigError(f"kd temperature must be a finite positive number, got {temperature}")

    def step(model: nn.Module, batch: Any, backward: Backward) -> tuple[torch.Tensor, Metrics]:
        images, labels = batch
        teacher_logits = _eval_forward(teacher, images)
        logits = model(images)
        loss = kd_loss(logits, teacher_logits, labels, alpha, temperature)
        detached = logits.detach()
        metrics: Metrics = {
            "acc": top1(detached, labels),
            "loss_ce": cross_entropy(detached, labels),
        }
        return loss, metrics

    return step


def _eval_forward(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``model(images)`` in eval mode without a graph; every module's training flag restored."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            return model(images)
    finally:
        for module, training in flags:
            module.training = training
