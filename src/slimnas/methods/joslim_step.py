"""`JoslimStep`: the training step of Joslim (Chin, Marculescu & Morcos, arXiv 2007.11752; the
method, its loop steps and its differences from the authors' code: `slimnas.methods.joslim`):
the sandwich rule whose middle archs are chosen by Gaussian-process models of loss and cost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from slimnas.cost.budget import COSTS
from slimnas.errors import CheckpointError, ConfigError
from slimnas.methods.baselines import nearest_uniform_arch
from slimnas.methods.fronts import pareto_front
from slimnas.methods.joslim_acquisition import (
    ObjectiveModels,
    botorch_modules,
    weight_search,
)
from slimnas.methods.scoring import ArchScorer
from slimnas.space.units import Arch, ChannelUnit
from slimnas.train.losses import cross_entropy, soft_cross_entropy
from slimnas.train.rng import generator_state, set_generator_state
from slimnas.train.step import Backward, Metrics, top1

if TYPE_CHECKING:
    from slimnas.supernet import Supernet

log = logging.getLogger(__name__)

JOSLIM_COSTS = ("macs", "memory")


# ---------------------------------------------------------------------------- training step
@dataclass
class _Round:
    """One round's candidates, their UCBs, and which may still be picked."""

    pool: list[Arch]
    loss_ucb: torch.Tensor
    cost_ucb: torch.Tensor
    available: torch.Tensor


class JoslimStep:
    """The Joslim training step (loop steps 2–3): a sibling of `SandwichStep` whose middle archs are
    chosen by the GP models instead of drawn at random.

    Per batch: the max arch on the labels (label-smoothed), then the ``sampled`` chosen archs
    and the min arch, on the max arch's detached softmax (in-place distillation, the authors')
    or on the labels (``distill=False``, the default recipe), one backward each, each of their
    losses times ``student_weight`` (1: summed, as the authors; ``1 / (M + 1)``: averaged, as
    `SandwichStep` with the default recipe). Every ``refit_every`` calls, before the batch, new
    archs are chosen: the first ``warmup`` are uniform widths (a width multiplier drawn
    uniformly), the next the max arch, and the rest come from the GP models (see the module
    docstring).

    Args:
        supernet: the supernet; depth and op units stay at their default.
        heldout: the held-out training batches the visited archs are re-scored on (the authors
            use one batch).
        cost: ``"macs"`` or ``"memory"`` (peak activation memory, Joslim's memory front).
        sampled: archs chosen per round (the paper's M = 2).
        refit_every: τ, steps between rounds.
        warmup: uniform-width archs drawn before the models are used (authors: 20).
        beta: UCB β (authors: 0.1); the bounds are ``mean + √β·σ``.
        reference: the scalarisation's reference point z (authors: −3, standardised).
        tolerance: cost-ratio tolerance of the weight search (authors: 0.02).
        weight_steps: bisection steps of the weight search (authors: 10).
        pool: candidate archs the acquisition is maximised over per round.
        seed: seeds the step's generator (pools, targets, warm-up widths) and the GP fits.
        label_smoothing: of the max arch's loss.
        distill: train the other archs on the max arch's output (else on the labels).
        student_weight: factor on each of the chosen and min archs' losses (1: summed, as
            the authors; see `recipe_student_weight`).

    Metrics: ``loss_max``, ``loss_min``, ``acc_max`` and ``visited`` (archs visited so far).
    """

    def __init__(
        self,
        supernet: Supernet,
        heldout: Sequence,
        *,
        cost: str = "macs",
        sampled: int = 2,
        refit_every: int = 250,
        warmup: int = 20,
        beta: float = 0.1,
        reference: float = -3.0,
        tolerance: float = 0.02,
        weight_steps: int = 10,
        pool: int = 1000,
        seed: int = 0,
        label_smoothing: float = 0.1,
        distill: bool = True,
        student_weight: float = 1.0,
    ):
        if cost not in JOSLIM_COSTS:
            raise ConfigError(f"joslim cost must be one of {', '.join(JOSLIM_COSTS)}, got {cost!r}")
        if not student_weight > 0:
            raise ConfigError(f"student_weight must be positive, got {student_weight}")
        if sampled < 1 or refit_every < 1 or warmup < 0 or pool < 2 or weight_steps < 1:
            raise ConfigError(
                "joslim needs sampled >= 1, refit_every >= 1, warmup >= 0, pool >= 2 and "
                f"weight_steps >= 1; got {sampled}, {refit_every}, {warmup}, {pool}, {weight_steps}"
            )
        botorch_modules()  # a missing extra stops the run now, not at the first fit
        space = supernet.space
        self.units: list[ChannelUnit] = space.channel_units()
        if not self.units:
            raise ConfigError(
                "joslim searches channel widths, and this space has no searchable one"
            )
        self.supernet, self.space = supernet, space
        self.scorer = ArchScorer(supernet, heldout, "batch")
        self.cost, self.sampled, self.refit_every, self.warmup = cost, sampled, refit_every, warmup
        self.beta, self.reference, self.tolerance = beta, reference, tolerance
        self.weight_steps, self.pool, self.seed = weight_steps, pool, seed
        self.label_smoothing, self.distill = label_smoothing, distill
        self.student_weight = student_weight
        self.generator = torch.Generator().manual_seed(seed)
        self.max_arch = space.max_arch()
        self.min_arch = self.max_arch.merged({u.name: u.choices[0] for u in self.units})
        self._max_cost = float(COSTS[cost](space, self.max_arch))
        self._costs: dict[Arch, float] = {}
        self.low = self.cost_ratio(self.min_arch)  # targets are drawn in [low, 1]
        self.min_ratio = min(u.choices[0] / u.max_channels for u in self.units)
        self.calls = self.drawn = 0
        self.archs: list[Arch] = []  # visited, in order; the min arch first
        self.losses: list[float | None] = []  # last refreshed held-out loss, None before
        self.current: list[Arch] = []  # the chosen archs trained until the next round
        self.fits: list[list[int]] = []  # [call, archs the models were fitted on]
        self.picks: list[list] = []  # [call, target, weight, cost, hit] per GP-chosen arch
        self.hyperparameters: dict | None = None  # of the last GP fit
        self._visit(self.min_arch)

    # ------------------------------------------------------------------------------- archs
    def cost_ratio(self, arch: Arch) -> float:
        """``arch``'s cost as a fraction of the max arch's."""
        if arch not in self._costs:
            self._costs[arch] = COSTS[self.cost](self.space, arch) / self._max_cost
        return self._costs[arch]

    def ratios(self, archs: Sequence[Arch]) -> torch.Tensor:
        """The width vectors of ``archs``: per channel unit, choice / max channels."""
        rows = [[arch[u.name] / u.max_channels for u in self.units] for arch in archs]
        return torch.tensor(rows, dtype=torch.float64).reshape(len(archs), len(self.units))

    def _encode(self, arch: Arch) -> list[int]:
        return [arch[u.name] for u in self.units]

    def _decode(self, widths: Sequence[int]) -> Arch:
        return self.space.validate(self.max_arch.merged(dict(zip(self._names(), widths))))

    def _names(self) -> list[str]:
        return [u.name for u in self.units]

    def _visit(self, arch: Arch) -> None:
        if arch not in self.archs:
            self.archs.append(arch)
            self.losses.append(None)

    def _rand(self) -> float:
        return float(torch.rand((), generator=self.generator))

    # ----------------------------------------------------------------------------- choosing
    def choose(self) -> list[Arch]:
        """Choose the next round's archs (loop step 2); changes the step's state."""
        round_: _Round | None = None
        picks: list[Arch] = []
        for _ in range(self.sampled):
            if self.drawn < self.warmup:  # warm-up: a conventional slimmable (uniform) width
                ratio = self.min_ratio + (1.0 - self.min_ratio) * self._rand()
                arch = nearest_uniform_arch(self.space, ratio)
            elif self.drawn == self.warmup:
                arch = self.max_arch
            else:
                round_ = round_ or self._open_round()
                arch = self._pick(round_)
            self.drawn += 1
            self._visit(arch)
            picks.append(arch)
        self.current = picks
        return picks

    def refresh(self) -> None:
        """Re-score every visited arch on the held-out batches (the weights have moved)."""
        self.losses = [s.loss for s in self.scorer.score_many(self.archs)]

    def fit_models(self) -> ObjectiveModels:
        """Refresh the losses, then fit the loss and cost models on every visited arch."""
        self.refresh()
        costs = torch.tensor([self.cost_ratio(a) for a in self.archs], dtype=torch.float64)
        losses = torch.tensor(self.losses, dtype=torch.float64)
        x, seed = self.ratios(self.archs), self.seed + len(self.fits)
        models = ObjectiveModels(x, losses, costs, seed, start=self.hyperparameters)
        self.hyperparameters = models.hyperparameters()  # the next fit starts from these
        self.fits.append([self.calls, len(self.archs)])
        return models

    def _open_round(self) -> _Round:
        models = self.fit_models()
        pool = self.candidates()
        loss_ucb, cost_ucb = models.ucb(self.ratios(pool), self.beta)
        # The max and min archs are trained at every step already.
        available = torch.tensor([a not in (self.max_arch, self.min_arch) for a in pool])
        return _Round(pool, loss_ucb, cost_ucb, available)

    def _pick(self, round_: _Round) -> Arch:
        """One arch for a target cost drawn uniformly in [low, 1] (the paper's uniform
        targets; PareCO's Pareto-aware weighting is not used)."""
        pool, available = round_.pool, round_.available
        target = self.low + (1.0 - self.low) * self._rand()
        choice = weight_search(
            round_.loss_ucb,
            round_.cost_ucb,
            lambda i: self.cost_ratio(pool[i]),
            target,
            tolerance=self.tolerance,
            steps=self.weight_steps,
            reference=self.reference,
            available=available if bool(available.any()) else None,
        )
        available[choice.index] = False  # the round's archs differ
        self.picks.append([self.calls, target, choice.weight, choice.cost, choice.hit])
        return pool[choice.index]

    def candidates(self) -> list[Arch]:
        """Up to ``pool`` distinct archs to maximise the acquisition over: the visited Pareto
        front, then, in turn, mutants of it (about two units one step up or down), uniform
        widths with every unit jittered by up to one step, and uniform per-unit draws."""
        known = [i for i, loss in enumerate(self.losses) if loss is not None]
        front = [
            self.archs[known[i]]
            for i in pareto_front(
                [self.losses[i] for i in known], [self.cost_ratio(self.archs[i]) for i in known]
            )
        ] or [self.max_arch]
        found = dict.fromkeys(front[: self.pool])
        draws = (lambda: self._mutant(front), self._jittered, self._uniform_draw)
        for k in range(3 * self.pool):
            if len(found) >= self.pool:
                break
            found.setdefault(draws[k % 3](), None)
        return list(found)

    def _mutant(self, front: Sequence[Arch]) -> Arch:
        parent = front[int(torch.randint(len(front), (), generator=self.generator))]
        move = torch.rand(len(self.units), generator=self.generator) < min(1.0, 2 / len(self.units))
        up = torch.rand(len(self.units), generator=self.generator) < 0.5
        changes = {}
        for unit, moved, bigger in zip(self.units, move.tolist(), up.tolist()):
            if moved:
                index = unit.choices.index(parent[unit.name]) + (1 if bigger else -1)
                changes[unit.name] = unit.choices[min(max(index, 0), len(unit.choices) - 1)]
        return parent.merged(changes)

    def _jittered(self) -> Arch:
        ratio = self.min_ratio + (1.0 - self.min_ratio) * self._rand()
        base = nearest_uniform_arch(self.space, ratio)
        steps = torch.randint(-1, 2, (len(self.units),), generator=self.generator).tolist()
        changes = {}
        for unit, step in zip(self.units, steps):
            index = unit.choices.index(base[unit.name]) + step
            changes[unit.name] = unit.choices[min(max(index, 0), len(unit.choices) - 1)]
        return base.merged(changes)

    def _uniform_draw(self) -> Arch:
        picks = torch.rand(len(self.units), generator=self.generator).tolist()
        return self.max_arch.merged(
            {u.name: u.choices[int(p * len(u.choices))] for u, p in zip(self.units, picks)}
        )

    # ----------------------------------------------------------------------------- training
    def __call__(
        self, model: nn.Module, batch: Any, backward: Backward
    ) -> tuple[torch.Tensor, Metrics]:
        if self.calls % self.refit_every == 0:
            self.choose()
        self.calls += 1
        images, labels = batch
        supernet = self.supernet
        supernet.activate(self.max_arch)
        logits = model(images)
        loss_max = cross_entropy(logits, labels, self.label_smoothing)
        backward(loss_max)
        teacher = logits.detach().float().softmax(dim=1)
        total, loss = loss_max.detach(), None
        try:
            for arch in [*self.current, self.min_arch]:  # the authors' order: chosen, then min
                supernet.activate(arch)
                out = model(images)
                if self.distill:
                    loss = soft_cross_entropy(out, teacher)
                else:
                    loss = cross_entropy(out, labels, self.label_smoothing)
                w = self.student_weight
                backward(loss * w if w != 1.0 else loss)
                total = total + loss.detach()
        finally:
            supernet.activate(self.max_arch)
        metrics: Metrics = {
            "loss_max": loss_max.detach(),
            "loss_min": loss.detach(),
            "acc_max": top1(logits.detach(), labels),
            "visited": float(len(self.archs)),
        }
        return total, metrics

    # ------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to choose the same archs, JSON-able: the visited
        archs (widths per channel unit) and losses, the current archs, counters, the generator
        and the last GP hyper-parameters (the next fit's warm start)."""
        return {
            "cost": self.cost,
            "units": self._names(),
            "calls": self.calls,
            "drawn": self.drawn,
            "generator": generator_state(self.generator),
            "visited": [self._encode(a) for a in self.archs],
            "losses": list(self.losses),
            "current": [self._encode(a) for a in self.current],
            "fits": [list(f) for f in self.fits],
            "picks": [list(p) for p in self.picks],
            "hyperparameters": self.hyperparameters,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict`. Changes the step.

        Raises:
            CheckpointError: the state belongs to another space or cost.
        """
        if state.get("units") != self._names() or state.get("cost") != self.cost:
            raise CheckpointError(
                "the saved joslim step belongs to another space or cost; resume with the same "
                "model, space and cost, or start a fresh run"
            )
        try:
            archs = [self._decode(w) for w in state["visited"]]
            current = [self._decode(w) for w in state["current"]]
            set_generator_state(self.generator, state["generator"])
            self.calls, self.drawn = int(state["calls"]), int(state["drawn"])
            self.losses = [None if v is None else float(v) for v in state["losses"]]
            self.fits = [list(f) for f in state["fits"]]
            self.picks = [list(p) for p in state["picks"]]
            self.hyperparameters = state.get("hyperparameters")
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"the saved joslim step is malformed ({err})") from None
        self.archs, self.current = archs, current


def visited_archs(state: Mapping[str, Any], space) -> list[Arch]:
    """The visited archs of a saved `JoslimStep` state (a checkpoint's ``step_fn``) in
    ``space``, e.g. to `Joslim.attach` a supernet trained by the pipeline."""
    base = space.max_arch()
    try:
        return [space.validate(base.merged(dict(zip(state["units"], w)))) for w in state["visited"]]
    except (KeyError, TypeError) as err:
        raise CheckpointError(
            f"not a saved joslim step ({err}); pass the checkpoint's step_fn state"
        ) from None


__all__ = ["JOSLIM_COSTS", "JoslimStep", "visited_archs"]
