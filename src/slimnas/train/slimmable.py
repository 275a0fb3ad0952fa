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
from slimnas.space.space import Space
from slimnas.space.units import Arch, OpUnit
from slimnas.train.losses import cross_entropy, soft_cross_entropy
from slimnas.train.rng import generator_state, set_generator_state
from slimnas.train.step import Backward, Metrics, top1

if TYPE_CHECKING:
    from slimnas.supernet import Supernet


SAMPLINGS = ("unit", "uniform")


def sample_arch(space: Space, sampling: str, generator: torch.Generator | None) -> Arch:
    """One random arch of ``space`` for the sandwich rule's middle archs.

    ``"unit"``: every unit its own uniformly drawn choice (AutoSlim's non-uniform supernet,
    §2.1). ``"uniform"``: one fraction ``u ~ U[0, 1)`` for the whole net, each unit taking the
    choice at that relative position (US-Nets' single width multiplier, arXiv 1903.05134 §3.1,
    extended to depth units); op units keep a uniformly drawn candidate.
    """
    if sampling == "unit":
        return space.sample(generator)
    if sampling != "uniform":
        raise ConfigError(f"sandwich sampling must be one of {SAMPLINGS}, got {sampling!r}")
    picks = torch.rand(len(space.searchable) + 1, generator=generator).tolist()
    fraction = picks[0]
    arch = {}
    for (name, unit), own in zip(space.searchable.items(), picks[1:]):
        at = own if isinstance(unit, OpUnit) else fraction
        arch[name] = unit.choices[int(at * len(unit.choices))]
    return Arch(arch)


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
        sampling: how the ``n − 2`` random archs are drawn (`sample_arch`).
        distill_after: steps during which the other archs learn from the labels before in-place
            distillation starts (0: from the first step, as the paper).
        student_weight: factor on each of the other archs' losses (1: summed, as the paper;
            ``1 / (n − 1)``: the max arch gets as much gradient as all the others together).
        student_ramp: steps over which the other archs' weight grows linearly from 0 to
            ``student_weight`` (0: full weight from the first step, as the paper). A short
            schedule's max arch first learns as a plain network would (the idea of
            Once-for-All's progressive shrinking, arXiv 1908.09791 §3.2, made continuous).

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
        sampling: str = "unit",
        distill_after: int = 0,
        student_weight: float = 1.0,
        student_ramp: int = 0,
    ):
        if n < 2:
            raise ConfigError(f"the sandwich rule trains at least the max and min archs; n={n}")
        if sampling not in SAMPLINGS:
            raise ConfigError(f"sandwich sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if distill_after < 0:
            raise ConfigError(f"distill_after must be >= 0 steps, got {distill_after}")
        self.supernet = supernet
        self.n = n
        self.generator = generator
        self.label_smoothing = label_smoothing
        self.distill = distill
        self.sampling = sampling
        self.distill_after = distill_after
        if not student_weight > 0:
            raise ConfigError(f"student_weight must be positive, got {student_weight}")
        self.student_weight = student_weight
        if student_ramp < 0:
            raise ConfigError(f"student_ramp must be >= 0 steps, got {student_ramp}")
        self.student_ramp = student_ramp
        self.steps = 0  # steps taken, for distill_after; saved in checkpoints

    def _sample(self) -> Arch:
        return sample_arch(self.supernet.space, self.sampling, self.generator)

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
        distill = self.distill and self.steps >= self.distill_after
        weight = self.student_weight
        if self.student_ramp:
            weight *= min(1.0, (self.steps + 1) / self.student_ramp)
        archs = [supernet.min_arch()] + [self._sample() for _ in range(self.n - 2)]
        try:
            for arch in archs:
                supernet.activate(arch)
                out = model(images)
                if distill:
                    loss = soft_cross_entropy(out, teacher)
                else:
                    loss = cross_entropy(out, labels, self.label_smoothing)
                backward(loss * weight if weight != 1.0 else loss)
                loss_min = loss.detach() if loss_min is None else loss_min
                total = total + loss.detach()
        finally:
            supernet.activate(max_arch)
        self.steps += 1
        return total, {"loss_max": loss_max.detach(), "loss_min": loss_min, "acc_max": acc_max}

    def state_dict(self) -> dict[str, Any]:
        """The sampling generator's state and the step count (JSON-able)."""
        state: dict[str, Any] = {"steps": self.steps}
        if self.generator is not None:
            state["generator"] = generator_state(self.generator)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the sampling generator and step count. Changes this step."""
        self.steps = int(state.get("steps", 0))
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


def recipe_student_weight(recipe: Any, n: int) -> float:
    """The factor on each of the ``n − 1`` non-max archs' losses a recipe's ``sandwich_loss``
    asks for: ``1 / (n − 1)`` for ``"mean"``, 1 for ``"sum"`` (the paper's)."""
    return 1.0 / (n - 1) if getattr(recipe, "sandwich_loss", "sum") == "mean" else 1.0


def recipe_sandwich_step(
    supernet: Supernet,
    recipe: Any,
    generator: torch.Generator | None = None,
    **overrides: Any,
) -> SandwichStep:
    """The sandwich step a ``[train]`` or ``[supernet]`` recipe configures: ``sandwich_n``,
    ``label_smoothing``, ``distill`` and ``sandwich_loss`` (``"mean"``: each of the other
    ``n − 1`` archs weighted ``1 / (n − 1)``; ``"sum"``: weighted 1, as the paper).
    ``overrides`` are `SandwichStep` arguments that replace the recipe's (checked as usual).

    The defaults of the config (``distill = false``, ``sandwich_loss = "mean"``) are the
    measured recipe of docs/results/supernet_recipe.md: at short schedules the paper's summed,
    distilled losses leave the max arch far below a plain network.
    """
    n = overrides.pop("n", recipe.sandwich_n)
    options = {
        "label_smoothing": recipe.label_smoothing,
        "distill": recipe.distill,
        "student_weight": recipe_student_weight(recipe, n),
        **overrides,
    }
    return SandwichStep(supernet, n, generator, **options)
