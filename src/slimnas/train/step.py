"""The step protocol: what a method gives the `Trainer`, and the plain classification step.

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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from slimnas.train.losses import cross_entropy

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
