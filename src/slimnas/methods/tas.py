"""TAS: Network Pruning via Transformable Architecture Search (Dong & Yang, NeurIPS 2019,
arXiv 1905.09717), on any traced model.

One search per budget. Each channel unit gets logits α over candidate widths and each depth unit
logits β over candidate depths (§3.1). Every iteration:

1. **architecture step** on one half of the training data (§3.4, Eq. 7): widths and depths are
   mixed by Gumbel-softmax samples (`gumbel_pair`: two widths per unit, Eq. 3; depth weights over
   all candidates, Eq. 6) in the supernet's soft mode (channel-wise interpolation, Eq. 4); the
   loss is CE + λ·`cost_loss` (Eq. 8) on the expected cost of plain softmax(α, β) (Eq. 5);
   Adam, β = (0.5, 0.999), weight decay 1e-3 (the authors' settings);
2. **weight step** on the other half: the same kind of sample with α, β detached, CE; SGD through
   the `Trainer`.

The derived arch takes the argmax of each unit (§3.5); when it breaks the budget, the units are
stepped down one candidate at a time, least probable loss first, until it fits, and the result
says so. The pruned net is then trained from scratch with KD from the unpruned one (§3.5: the
pipeline's ``retrain.distill``, α = 0.9, T = 4).

Deviations from the paper and the official code, stated:

- candidate widths are the paper's ratios {0.3, …, 1.0} of each unit's channels (int-truncated,
  deduplicated, `tas_width_choices`), each snapped to the nearest width of the space's grid so
  that every method searches one space; a 16-channel unit on a grid of 4 gets {4, 8, 12, 16};
- widths are searched per channel unit of the traced model (layers tied by a residual addition
  share one), not per conv with added 1×1 projection shortcuts as the official CIFAR ResNets do;
  the exported net keeps the model's own topology, so its MACs are the space's;
- one BatchNorm is shared across widths (slimnas soft mode) where the official code keeps one per
  candidate width;
- the cost band is [(1 − t)·R, R]: the upper edge is the budget itself, because a budget is a
  hard limit here (paper: (1 ± t)·R; official code: [R − t·MAX, R]);
- the architecture step of an iteration comes before its weight step (official: after);
- τ decays per epoch, linearly 10 → 0.1 by default (the paper); ``tau_schedule="cosine"`` with
  ``tau_max=5`` is the released script's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from slimnas.cost.budget import Budget
from slimnas.data.prepare import is_split
from slimnas.data.split import class_balanced_split
from slimnas.errors import ConfigError
from slimnas.methods.arch_step import ArchStep
from slimnas.methods.base import Options as BaseOptions
from slimnas.methods.base import register
from slimnas.methods.one_budget import OneBudgetMethod
from slimnas.methods.setup import Setup
from slimnas.methods.tas_arch import (
    TAS_RATIOS,
    TASArch,
    cost_loss,
    derive,
    expected_form,
    tau_at,
)
from slimnas.settings import choice, integer, items, number, positive
from slimnas.space.units import DepthUnit
from slimnas.train.losses import cross_entropy
from slimnas.train.step import Backward, Metrics, top1
from slimnas.train.trainer import TrainingError


def distribution_figures(arch_params) -> dict[str, float]:
    """How far a search has decided: over the width units and over the depth units of
    ``arch_params`` (a `TASArch`), the mean normalised entropy of softmax(logits) (1 = uniform,
    0 = one candidate) and the mean top probability. NaN for a kind with no unit."""
    sums = {k: [] for k in ("width_entropy", "width_top", "depth_entropy", "depth_top")}
    for name, _, logits in arch_params.units():
        kind = "depth" if isinstance(arch_params.space.units[name], DepthUnit) else "width"
        p = logits.detach().softmax(-1)
        entropy = -(p * p.clamp_min(1e-30).log()).sum() / math.log(len(p))
        sums[f"{kind}_entropy"].append(float(entropy))
        sums[f"{kind}_top"].append(float(p.max()))
    return {k: sum(v) / len(v) if v else float("nan") for k, v in sums.items()}


class TASStep(ArchStep):
    """The `Trainer` step of a TAS search: an architecture step, then a weight step (module doc).

    Args:
        supernet: the supernet the Trainer trains (its weights are the searched net's).
        arch_params: the `TASArch` being learned (not in the Trainer's optimizer).
        arch_loader: batches of the architecture half of the training data.
        budget: the target; its metric needs an expected form (`EXPECTED`).
        steps_per_epoch, epochs: of the Trainer, for the temperature schedule.
        cost_weight: λ of Eq. 7 (2 in the paper).
        tolerance: t of Eq. 8 (5 %).
        tau_max, tau_min, tau_schedule: the temperature schedule (`tau_at`).
        arch_lr, arch_weight_decay, arch_beta2: Adam of the architecture step.
        generator: Gumbel noise and candidate draws; saved in checkpoints.
        expected_cost: the expected form of the budget's cost; default `expected_form`.

    Metrics: ``tau``, ``acc`` (weight batch), ``arch_loss``, ``arch_acc``, ``cost_expected`` and
    ``cost_argmax`` as fractions of the budget, and the distributions' convergence
    (`distribution_figures`: ``width_entropy``, ``width_top``, ``depth_entropy``, ``depth_top``).
    """

    def __init__(
        self,
        supernet,
        arch_params: TASArch,
        arch_loader: Any,
        budget: Budget,
        *,
        steps_per_epoch: int,
        epochs: int,
        cost_weight: float = 2.0,
        tolerance: float = 0.05,
        tau_max: float = 10.0,
        tau_min: float = 0.1,
        tau_schedule: str = "linear",
        arch_lr: float = 1e-3,
        arch_weight_decay: float = 1e-3,
        arch_beta2: float = 0.999,
        generator: torch.Generator | None = None,
        expected_cost=None,
    ):
        expected_cost = expected_cost or expected_form(budget)
        tau_at(0, epochs, tau_max, tau_min, tau_schedule)  # an unknown schedule fails now
        # β1 = 0.5, β2 = 0.999, weight decay 1e-3: the authors' architecture optimiser. A
        # search of a few hundred steps needs a shorter β2 memory (bench/tas_convergence.py).
        optimizer = torch.optim.Adam(
            arch_params.parameters(),
            lr=arch_lr,
            betas=(0.5, arch_beta2),
            weight_decay=arch_weight_decay,
        )
        super().__init__(arch_params, arch_loader, optimizer, generator)
        self.supernet = supernet
        self.budget = budget
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.cost_weight = cost_weight
        self.tolerance = tolerance
        self.tau_options = (tau_max, tau_min, tau_schedule)
        self.expected_cost = expected_cost

    def tau(self) -> float:
        return tau_at(self.steps // self.steps_per_epoch, self.epochs, *self.tau_options)

    def _activate(self, tau: float, detach: bool) -> None:
        widths, depths = self.arch.sample(tau, self.generator, detach)
        self.supernet.activate_soft(widths, depths)

    def __call__(self, model: nn.Module, batch: Any, backward: Backward) -> tuple:
        space, tau = self.arch.space, self.tau()
        # Architecture step (Eq. 7): CE on the other half + λ·L_cost, gradients to α and β only.
        arch_images, arch_labels = self._arch_batch()
        self._activate(tau, detach=False)
        logits = model(arch_images)
        expected = self.expected_cost(space, self.arch.probs())
        actual = self.budget.cost(space, self.arch.argmax())
        arch_ce = cross_entropy(logits, arch_labels)
        penalty = cost_loss(expected, actual, self.budget.limit, self.tolerance)
        arch_loss = arch_ce + self.cost_weight * penalty
        if not bool(torch.isfinite(arch_loss.detach())):
            raise TrainingError(
                f"the TAS architecture loss is {float(arch_loss)} at step {self.steps + 1}; "
                "lower search.tas.arch_lr or the learning rate"
            )
        self.apply_arch_grads(torch.autograd.grad(arch_loss, list(self.arch.parameters())))
        # Weight step: a fresh sample with α and β detached; the Trainer backpropagates and steps.
        images, labels = batch
        self._activate(tau, detach=True)
        logits_w = model(images)
        loss = cross_entropy(logits_w, labels)
        self.steps += 1
        metrics: Metrics = {
            "tau": tau,
            "acc": top1(logits_w.detach(), labels),
            "arch_loss": arch_loss.detach(),
            "arch_acc": top1(logits.detach(), arch_labels),
            "cost_expected": float(expected.detach()) / self.budget.limit,
            "cost_argmax": actual / self.budget.limit,
            **distribution_figures(self.arch),
        }
        return loss, metrics


# ------------------------------------------------------------------------------- method
@dataclass(frozen=True)
class TASOptions(BaseOptions):
    """TAS's hyper-parameters (`TASStep`)."""

    epochs: int | None = integer(
        None, 1, "search epochs of each budget (unset: supernet.epochs, with its recipe)", True
    )
    tau_max: float = number(10.0, "a positive number", positive, "first temperature")
    tau_min: float = number(0.1, "a positive number", positive, "last temperature")
    tau_schedule: str = choice(
        "linear", ("linear", "cosine"), "temperature decay per epoch (paper: linear)"
    )
    cost_weight: float = number(
        2.0, "a number >= 0", lambda v: v >= 0, "weight of the cost loss (lambda, Eq. 7)"
    )
    tolerance: float = number(
        0.05, "a number in [0, 1)", lambda v: 0 <= v < 1, "band below the budget (t, Eq. 8)"
    )
    arch_lr: float = number(1e-3, "a positive number", positive, "Adam lr of the logits")
    arch_weight_decay: float = number(
        1e-3, "a number >= 0", lambda v: v >= 0, "Adam weight decay of the logits"
    )
    arch_beta2: float = number(
        0.999,
        "a number in [0, 1)",
        lambda v: 0 <= v < 1,
        "Adam beta2 of the logits (the authors': 0.999; a short CPU search: 0.9)",
    )
    ratios: tuple[float, ...] = items(
        TAS_RATIOS,
        float,
        "a non-empty list of numbers in (0, 1]",
        lambda v: bool(v) and all(0 < r <= 1 for r in v),
        "candidate width ratios of each channel unit (§4)",
    )


@register
class TAS(OneBudgetMethod):
    """TAS (module doc): each budget's search trains a copy of the model on one half of the
    training split while the architecture learns on the other (§3.4), then derives the arch.

    ``TAS(epochs=10).fit(Supernet(model, space), setup).search(["macs<=50%"])``
    """

    name = "tas"
    Options = TASOptions
    legacy_prefix = "tas"
    searches_depth: ClassVar[bool] = True
    trace_key = "tas"
    trace_columns = (
        "tau",
        "acc",
        "cost_expected",
        "cost_argmax",
        "width_entropy",
        "width_top",
        "depth_entropy",
        "depth_top",
    )
    training = "TAS search"

    def loaders(self, setup: Setup) -> tuple[Any, Any]:
        """Class-balanced halves of the training split: weights on one, architecture on the
        other (§3.4)."""
        if not is_split(setup.data.train):
            raise ConfigError(
                "TAS trains weights and architecture on two halves of the training images, "
                "which a data loader cannot be cut into; give Setup in-memory or streamed data "
                "(load_training_data), not TrainingData.from_loaders"
            )
        images, labels = setup.data.train
        seed = setup.recipe.seed
        weight_half, arch_half = class_balanced_split(labels, 0.5, seed=seed)
        train = setup.train_loader((images[weight_half], labels[weight_half]), seed)
        arch_data = setup.train_loader((images[arch_half], labels[arch_half]), seed + 1)
        return train, arch_data

    def make_step(
        self, supernet, arch_data, budget: Budget, steps_per_epoch: int, epochs: int
    ) -> TASStep:
        """The `TASStep` of a search of ``budget`` (with fresh architecture logits)."""
        o = self.options
        arch_params, generator = self.new_arch_params(
            supernet,
            lambda space, g: TASArch(
                space, depth=self.searches_depth, ratios=o.ratios, generator=g
            ),
        )
        return TASStep(
            supernet,
            arch_params,
            arch_data,
            budget,
            steps_per_epoch=steps_per_epoch,
            epochs=epochs,
            generator=generator,
            cost_weight=o.cost_weight,
            tolerance=o.tolerance,
            tau_max=o.tau_max,
            tau_min=o.tau_min,
            tau_schedule=o.tau_schedule,
            arch_lr=o.arch_lr,
            arch_weight_decay=o.arch_weight_decay,
            arch_beta2=o.arch_beta2,
        )

    def derive(self, arch_params: TASArch, budget: Budget):
        return derive(arch_params, budget)

    def result_info(self, step: TASStep) -> dict[str, Any]:
        """Whether depth was searched, and the expected cost under the final probabilities."""
        with torch.no_grad():
            expected = float(step.expected_cost(step.arch.space, step.arch.probs()))
        return {"depth": self.searches_depth, "expected_cost": expected}


@register
class TASWidth(TAS):
    """TAS (W): widths only, depths at their max."""

    name = "tas_width"
    searches_depth = False


__all__ = ["TAS", "TASArch", "TASOptions", "TASStep", "TASWidth"]
