"""Joslim: joint training of the weights and of the set of widths of a slimmable supernet
(Chin, Marculescu & Morcos, "Joslim: Joint Widths and Weights Optimization for Slimmable Neural
Networks", arXiv 2007.11752; code: cmu-enyac/Joslim ``joslim.py``). The paper's equation and
section numbers could not be checked against its PDF, so the comments below cite the steps of the
authors' training loop as the method notes (papers/autoslim_joslim.md §3.3) number them: "loop
step 2.5" is item 5 of step 2.

Training is the sandwich rule with in-place distillation (`slimnas.train.slimmable`), except that
the middle archs are not random: every τ (``refit_every``) steps the archs visited so far are
re-scored on a held-out batch of the *training* data, Gaussian-process models of loss and of cost
(MACs, or peak activation memory for the memory front) are fitted over the width vector, and each
of the M trained archs is the maximiser of an augmented Tchebyshev scalarisation of the two
models' upper confidence bounds, with the weight bisected so that the arch's cost hits a target
drawn uniformly between the smallest and the largest arch's cost. The final archs come from the
Pareto front (loss vs cost) of the visited archs, scored after BatchNorm recalibration.

Differences from the authors' code:

- The decision variable is one width ratio per traced `ChannelUnit` (choice / max channels), and
  archs are the space's rounded choices. The acquisition is maximised over a *pool* of archs of
  the space (the visited front, mutations of it, uniform widths with per-unit jitter, and uniform
  per-unit draws) instead of botorch's continuous ``optimize_acqf`` followed by flooring: the pool
  holds only archs that can be trained, and their exact cost is what the bisection checks.
- Depth and op units stay at their default (the paper searches widths only).
- The losses are refreshed on held-out training images, never the test set, with plain
  cross-entropy and BatchNorm in batch-statistics mode (`ArchScorer` with ``bn="batch"``); under
  torchrun the archs are shared out and the scores all-reduced, so every rank fits the same
  models and picks the same archs (the authors' ranks drift apart).
- The losses are refreshed only when a model is about to be fitted (the authors also refresh
  during warm-up, where nothing reads them), and the min arch, trained at every step, is part of
  the visited set from the start, so that the cost model knows the low end.
- The final archs are the one Pareto front of the visited archs re-scored on all held-out
  batches at the end, each scored again after BatchNorm recalibration; per budget, the lowest
  recalibrated loss among the front archs that fit wins (the authors peel several fronts and
  filter them on the test set).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from slimnas.cost.budget import COSTS, Budget
from slimnas.errors import BudgetError, CheckpointError, ConfigError
from slimnas.methods.base import SupernetMethod
from slimnas.methods.baselines import nearest_uniform_arch
from slimnas.methods.joslim_acquisition import (
    ObjectiveModels,
    WeightChoice,
    botorch_modules,
    pareto_front,
    tchebyshev,
    weight_search,
)
from slimnas.methods.result import Result, arch_costs
from slimnas.methods.scoring import ArchScorer, Score
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
    and the min arch on the max arch's detached softmax (in-place distillation), one backward
    each, losses summed. Every ``refit_every`` calls, before the batch, new archs are chosen:
    the first ``warmup`` are uniform widths (a width multiplier drawn uniformly), the next the
    max arch, and the rest come from the GP models (see the module docstring).

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
    ):
        if cost not in JOSLIM_COSTS:
            raise ConfigError(f"joslim cost must be one of {', '.join(JOSLIM_COSTS)}, got {cost!r}")
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
                backward(loss)
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


def check_width_budgets(space, budgets: Sequence[Budget]) -> None:
    """Raise `BudgetError` for a budget that no arch of ``space`` meets with its depth and op
    units at their default (Joslim searches widths only); e.g. before its training starts."""
    for name, unit in space.searchable.items():
        if not isinstance(unit, ChannelUnit):
            space = space.fix(name)
    for budget in budgets:
        try:
            budget.check_feasible(space)
        except BudgetError as err:
            raise BudgetError(f"{err} (joslim searches widths only)") from None


# ------------------------------------------------------------------------------------ method
class Joslim(SupernetMethod):
    """Joslim: a supernet trained on GP-chosen widths, then the Pareto front of those widths.

    result = Joslim(epochs=30, cost="macs").fit(supernet, train_loader, heldout).search(budgets)

    ``sandwich_n`` counts the archs per step as for AutoSlim: max, min and ``sandwich_n − 2``
    GP-chosen ones (the paper's M = 2 with the default 4). BatchNorm is recalibrated per arch
    before the final scoring (``bn="recalibrate"``) unless told otherwise.

    Args:
        cost: ``"macs"`` or ``"memory"`` (peak activation memory): what the models and the
            front trade against the loss.
        refit_every: τ, steps between rounds of choosing archs; None sets it so that about
            ``visits`` archs are chosen over the training (the authors' rule: steps × M / τ ≈ 1000).
        visits: see ``refit_every``.
        warmup, beta, reference, tolerance, weight_steps, pool: of `JoslimStep`.
        refresh_batches: held-out batches the visited archs are re-scored on every round.
        **kwargs: the training recipe and scoring options of `SupernetMethod`.
    """

    name = "joslim"

    def __init__(
        self,
        *,
        cost: str = "macs",
        refit_every: int | None = None,
        visits: int = 1000,
        warmup: int = 20,
        beta: float = 0.1,
        reference: float = -3.0,
        tolerance: float = 0.02,
        weight_steps: int = 10,
        pool: int = 1000,
        refresh_batches: int = 1,
        bn: str = "recalibrate",
        **kwargs: Any,
    ):
        super().__init__(bn=bn, **kwargs)
        if cost not in JOSLIM_COSTS:
            raise ConfigError(f"joslim cost must be one of {', '.join(JOSLIM_COSTS)}, got {cost!r}")
        if self.sandwich_n < 3:
            raise ConfigError(
                f"joslim trains max, min and at least one chosen arch: sandwich_n >= 3, got "
                f"{self.sandwich_n}"
            )
        if visits < 1 or refresh_batches < 1:
            raise ConfigError("joslim needs visits >= 1 and refresh_batches >= 1")
        self.cost, self.refit_every, self.visits = cost, refit_every, visits
        self.warmup, self.beta, self.reference = warmup, beta, reference
        self.tolerance, self.weight_steps, self.pool = tolerance, weight_steps, pool
        self.refresh_batches = refresh_batches
        self.step: JoslimStep | None = None
        self.visited: list[Arch] | None = None
        self._front: tuple | None = None

    def refit_interval(self, steps_per_epoch: int) -> int:
        """τ: ``refit_every``, or the interval that visits about ``visits`` archs."""
        if self.refit_every is not None:
            return self.refit_every
        steps = self.epochs * steps_per_epoch
        return max(1, round(steps * (self.sandwich_n - 2) / self.visits))

    def training_step(self, supernet, train: Any, heldout: Sequence) -> JoslimStep:
        """A `JoslimStep` on the first ``refresh_batches`` held-out batches."""
        if not heldout:
            raise ConfigError("joslim re-scores archs on held-out training data; give heldout")
        self.step = JoslimStep(
            supernet,
            list(heldout)[: self.refresh_batches],
            cost=self.cost,
            sampled=self.sandwich_n - 2,
            refit_every=self.refit_interval(len(train)),
            warmup=self.warmup,
            beta=self.beta,
            reference=self.reference,
            tolerance=self.tolerance,
            weight_steps=self.weight_steps,
            pool=self.pool,
            seed=self.seed,
            label_smoothing=self.label_smoothing,
            distill=self.distill,
        )
        return self.step

    def attach(
        self,
        supernet,
        heldout: Sequence,
        calibration: Sequence | None = None,
        visited: Sequence[Mapping] | None = None,
    ) -> Joslim:
        """As `SupernetMethod.attach`; ``visited`` are the archs the training visited (default:
        those of this method's `fit`; `visited_archs` reads them from a checkpoint)."""
        super().attach(supernet, heldout, calibration)
        if visited is not None:
            self.visited = [supernet.space.validate(a) for a in visited]
        elif self.step is not None and self.step.supernet is supernet:
            self.visited = list(self.step.archs)
        self._front = None
        return self

    # ------------------------------------------------------------------------------ search
    def _scored_front(self) -> tuple[list[Arch], list[Score], list[Arch], list[Score]]:
        """(visited, their batch-BN scores, the front, its scores with the method's BN)."""
        if self._front is not None:
            return self._front
        space = self.search_space()
        if not self.visited:
            raise ConfigError(
                "joslim searches the archs its training visited: call fit(...), or attach(..., "
                "visited=visited_archs(checkpoint.state['step_fn'], space))"
            )
        width_min = space.max_arch().merged({u.name: u.choices[0] for u in space.channel_units()})
        archs = list(dict.fromkeys([*self.visited, width_min, space.max_arch()]))
        quick = self.scorer
        if quick.bn != "batch":
            quick = ArchScorer(self.supernet, quick.batches, "batch")
        quick_scores = quick.score_many(archs)
        costs = [COSTS[self.cost](space, a) for a in archs]
        on_front = pareto_front([s.loss for s in quick_scores], costs)
        front = [archs[i] for i in on_front]
        if quick is self.scorer:
            scores = [quick_scores[i] for i in on_front]
        else:
            scores = self.scorer.score_many(front)
        self._front = (archs, quick_scores, front, scores)
        log.info("joslim: %d visited archs, %d on the front", len(archs), len(front))
        return self._front

    def front(self) -> list[dict[str, Any]]:
        """The Pareto front of the visited archs (by batch-BN held-out loss and cost), each
        scored with the method's BN mode: ``arch``, every cost, ``accuracy``, ``loss``, by
        ascending cost."""
        space = self.search_space()
        _, _, front, scores = self._scored_front()
        return [
            {"arch": dict(a), **arch_costs(space, a), "accuracy": s.accuracy, "loss": s.loss}
            for a, s in zip(front, scores)
        ]

    def search(self, budgets: Sequence[Budget | str]) -> list[Result]:
        """Per budget, the front arch that fits it with the lowest held-out loss (recalibrated
        BN by default); when none fits (a budget on another metric), the visited arch that fits
        with the lowest batch-BN loss.

        Raises:
            BudgetError: a budget that no width of the space meets (depths and ops are fixed).
        """
        budgets = self.budgets(budgets)
        check_width_budgets(self.search_space(), budgets)
        space = self.search_space()
        archs, quick, front, scores = self._scored_front()
        points = [{k: v for k, v in p.items() if k != "arch"} for p in self.front()]
        results = []
        for i, budget in enumerate(budgets):
            fitting = [j for j, a in enumerate(front) if budget.fits(space, a)]
            if fitting:
                j = min(fitting, key=lambda j: (scores[j].loss, -scores[j].accuracy, j))
                arch, score, source = front[j], scores[j], "front"
            else:
                fits = [j for j, a in enumerate(archs) if budget.fits(space, a)]
                j = min(fits, key=lambda j: (quick[j].loss, j))
                (score,) = self.scorer.score_many([archs[j]])
                arch, source = archs[j], "visited"
            info: dict[str, Any] = {"source": source, "visited": len(archs), "front": len(front)}
            if i == 0:
                info["front_points"] = points
            results.append(Result.of(self.name, budget, space, arch, score, **info))
        return results


__all__ = [
    "JOSLIM_COSTS",
    "check_width_budgets",
    "Joslim",
    "JoslimStep",
    "ObjectiveModels",
    "WeightChoice",
    "pareto_front",
    "tchebyshev",
    "visited_archs",
    "weight_search",
]
