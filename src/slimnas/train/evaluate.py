"""Top-1 accuracy and mean cross-entropy of a model over a data set."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slimnas.data.iterable import model_device, moved


@dataclass(frozen=True)
class Evaluation:
    """Top-1 ``accuracy`` in [0, 1], mean cross-entropy ``loss``, over ``samples`` images."""

    accuracy: float
    loss: float
    samples: int


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable) -> Evaluation:
    """Score ``model`` in eval mode on ``(images, labels)`` batches (one pass).

    ``batches`` is any iterable of them (a list, a `BatchLoader`, a DataLoader); they are moved
    to the model's device when elsewhere. Each module's training flag is restored afterwards.
    For a subnet of a supernet, activate it and `recalibrate_bn` first.
    """
    device = model_device(model)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    correct, total_loss, count = 0, 0.0, 0
    try:
        for images, labels in moved(batches, device):
            logits = model(images).float()
            total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == labels).sum())
            count += len(labels)
    finally:
        for module, mode in modes.items():
            module.train(mode)
    if count == 0:
        return Evaluation(accuracy=float("nan"), loss=float("nan"), samples=0)
    return Evaluation(accuracy=correct / count, loss=total_loss / count, samples=count)
