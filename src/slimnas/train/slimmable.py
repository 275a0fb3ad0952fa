"""The sandwich rule with in-place distillation: the training step of slimmable supernets.

From "Universally Slimmable Networks and Improved Training Techniques" (Yu & Huang, arXiv
1903.05134, §3.1–3.2), the step AutoSlim (arXiv 1903.11728) trains its supernet with. Per batch:

1. the **max** arch, on the labels (label-smoothed cross-entropy);
2. the **min** arch and ``n − 2`` **random** archs, in that order, each on the soft
   cross-entropy against the max arch's softmax output, *detached* (in-place distillation:
   the big network teaches the small ones, and no gradient flows back into the teacher).

Each arch does its own forward and backward, so gradients accumulate and only one arch's
activations are alive at a time; the Trainer then takes one optimizer step. Losses are summed,
not averaged, as in the released code.

Differences from the released code: random archs are drawn per unit (channel counts, depths,
operators) from the traced space, not one global width multiplier; label smoothing is torch's
(``ε/K`` on every class) rather than ``ε/(K−1)`` on the wrong ones; and distillation is on by
default (the released configs set a key, ``soft_target``, that the code never reads, so it was
silently off).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from slimnas.errors import ConfigError
from slimnas.train.losses import cross_entropy, soft_cross_entropy
from slimnas.train.rng import generator_state, set_generator_state
from slimnas.train.step import Backward, Metrics, top1

if TYPE_CHECKING:
    from slimnas.supernet import Supernet


class SandwichStep:
    """A step function (`slimnas.train.step`) that trains ``n`` archs of ``supernet`` per batch.

    Args:
        supernet: the supernet; the model the Trainer passes in is what runs forward (the same
            supernet, or a wrapper around it), this one is what gets activated.
        n: archs per step, at least 2: max, min and ``n − 2`` random ones.
        generator: draws the random archs; its state is saved in checkpoints. None draws from
            torch's global generator (which checkpoints save too).
        label_smoothing: of the max arch's label loss.
        distill: train the other archs on the max arch's output; False trains every arch on the
            labels (with the same smoothing).

    Metrics: ``loss_max``, ``loss_min`` and ``acc_max`` (top-1 of the max arch on the batch).
    The returned loss is the sum of the ``n`` losses.
    """

    def __init__(
        self,
        supernet: Supernet,
        n: int = 4,
        generator: torch.Generator | None = None,
        label_smoothing: float = 0.1,
        distill: bool = True,
    ):
        if n < 2:
            raise ConfigError(f"the sandwich rule trains at least the max and min archs; n={n}")
        self.supernet = supernet
        self.n = n
        self.generator = generator
        self.label_smoothing = label_smoothing
        self.distill = distill

    def __call__(
        self, model: nn.Module, batch: Any, backward: Backward
    ) -> tuple[torch.Tensor, Metrics]:
        images, labels = batch
        supernet = self.supernet
        max_arch = supernet.max_arch()
        supernet.activate(max_arch)
        logits = model(images)
        loss_max = cross_entropy(logits, labels, self.label_smoothing)
        backward(loss_max)
        teacher = logits.detach().float().softmax(dim=1)
        acc_max = top1(logits.detach(), labels)
        total = loss_max.detach()
        loss_min = None
        archs = [supernet.min_arch()]
        archs += [supernet.space.sample(self.generator) for _ in range(self.n - 2)]
        try:
            for arch in archs:
                supernet.activate(arch)
                out = model(images)
                if self.distill:
                    loss = soft_cross_entropy(out, teacher)
                else:
                    loss = cross_entropy(out, labels, self.label_smoothing)
                backward(loss)
                loss_min = loss.detach() if loss_min is None else loss_min
                total = total + loss.detach()
        finally:
            supernet.activate(max_arch)
        return total, {"loss_max": loss_max.detach(), "loss_min": loss_min, "acc_max": acc_max}

    def state_dict(self) -> dict[str, Any]:
        """The sampling generator's state (JSON-able); empty without a generator."""
        return {} if self.generator is None else {"generator": generator_state(self.generator)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the sampling generator. Changes ``self.generator``."""
        if self.generator is not None and "generator" in state:
            set_generator_state(self.generator, state["generator"])


def sandwich_step(
    supernet: Supernet,
    n: int = 4,
    generator: torch.Generator | None = None,
    label_smoothing: float = 0.1,
    distill: bool = True,
) -> SandwichStep:
    """The sandwich-rule step of ``supernet`` (see `SandwichStep`), for ``Trainer(step_fn=...)``."""
    return SandwichStep(supernet, n, generator, label_smoothing, distill)
