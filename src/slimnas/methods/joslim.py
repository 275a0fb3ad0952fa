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
- The chosen and min archs' losses follow ``[supernet] sandwich_loss`` as the sandwich rule's
  do: averaged (each ``1 / (M + 1)``) by default, summed as the authors with ``"sum"``.
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
from typing import Any

from slimnas.cost.budget import COSTS, Budget
from slimnas.errors import BudgetError, ConfigError
from slimnas.methods.base import Method, register
from slimnas.methods.base import Options as BaseOptions
from slimnas.methods.baseline_search import RandomSearch, read_scored
from slimnas.methods.fronts import (
    compare_fronts,
    pareto_front,
    scored_front,
    tested_front,
)
from slimnas.methods.joslim_acquisition import (
    ObjectiveModels,
    WeightChoice,
    botorch_modules,
    tchebyshev,
    weight_search,
)
from slimnas.methods.joslim_step import JOSLIM_COSTS, JoslimStep, visited_archs
from slimnas.methods.result import Result, arch_costs
from slimnas.methods.scoring import ArchScorer, Score
from slimnas.methods.setup import Setup, load_weights, read_json
from slimnas.settings import choice, integer, number
from slimnas.space.units import Arch, ChannelUnit
from slimnas.train import distributed
from slimnas.train.slimmable import recipe_student_weight

log = logging.getLogger(__name__)

STATE_FILE = "joslim_step.json"  # in <folder>/final/, beside the supernet


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


@dataclass(frozen=True)
class JoslimOptions(BaseOptions):
    """Joslim's hyper-parameters (`JoslimStep`); its training recipe is ``[supernet]``'s."""

    cost: str = choice(
        "macs", JOSLIM_COSTS, "the cost its GP models and fronts trade against the loss"
    )
    visits: int = integer(200, 1, "archs chosen over its training when refit_every is unset")
    refit_every: int | None = integer(
        None, 1, "steps between rounds of chosen archs (unset: from visits)", True
    )
    warmup: int = integer(20, 0, "uniform-width archs before the GP models")
    pool: int = integer(1000, 2, "candidate archs per round")
    refresh_images: int = integer(
        256, 1, "held-out images the visited archs are re-scored on every round"
    )
    beta: float = number(0.1, "a number >= 0", lambda v: v >= 0, "UCB beta (authors: 0.1)")
    reference: float = number(
        -3.0, "a number", lambda v: True, "the scalarisation's reference point z (authors: -3)"
    )
    tolerance: float = number(
        0.02, "a number in [0, 1)", lambda v: 0 <= v < 1, "cost tolerance of the weight search"
    )
    weight_steps: int = integer(10, 1, "bisection steps of the weight search (authors: 10)")
    bn: str = choice(
        "recalibrate", ("batch", "recalibrate"), "BatchNorm statistics of the final scoring"
    )


# ------------------------------------------------------------------------------------ method
@register
class Joslim(Method):
    """Joslim: its own supernet trained on GP-chosen widths (resumable in ``search/joslim/``,
    saved with the step's state in ``final/``), then per budget the arch of the Pareto front of
    those widths that fits with the lowest held-out loss.

    ``results = Joslim(cost="macs").fit(Supernet(model, space), setup).search(budgets)``

    ``recipe.sandwich_n`` counts the archs per step as for AutoSlim: max, min and
    ``sandwich_n − 2`` GP-chosen ones (the paper's M = 2 with the default 4).
    """

    name = "joslim"
    Options = JoslimOptions
    shared_supernet = False
    legacy_prefix = "joslim"

    def __init__(self, options: JoslimOptions | None = None, **changes: Any):
        super().__init__(options, **changes)
        self.step: JoslimStep | None = None
        self.visited: list[Arch] | None = None
        self._front: tuple | None = None

    def check(self, space, budgets: Sequence[Budget]) -> None:
        check_width_budgets(space, budgets)
        botorch_modules()  # a missing extra stops the run now, not after a supernet

    def check_recipe(self, recipe: Any) -> None:
        if recipe.sandwich_n < 3:
            raise ConfigError(
                "joslim trains the max, the min and at least one chosen arch per step: set "
                f"supernet.sandwich_n >= 3 (got {recipe.sandwich_n}) or drop joslim"
            )

    def refit_interval(self, steps_per_epoch: int, recipe: Any) -> int:
        """τ: ``refit_every``, or the interval that visits about ``visits`` archs (the authors'
        rule: steps × M / τ ≈ 1000)."""
        if self.options.refit_every is not None:
            return self.options.refit_every
        steps = recipe.epochs * steps_per_epoch
        return max(1, round(steps * (recipe.sandwich_n - 2) / self.options.visits))

    def training_step(self, supernet, train: Any, refresh: Sequence, recipe: Any) -> JoslimStep:
        """A `JoslimStep` re-scoring the visited archs on the ``refresh`` batches."""
        self.check_recipe(recipe)
        o = self.options
        self.step = JoslimStep(
            supernet,
            list(refresh),
            cost=o.cost,
            sampled=recipe.sandwich_n - 2,
            refit_every=self.refit_interval(len(train), recipe),
            warmup=o.warmup,
            beta=o.beta,
            reference=o.reference,
            tolerance=o.tolerance,
            weight_steps=o.weight_steps,
            pool=o.pool,
            seed=recipe.seed,
            label_smoothing=recipe.label_smoothing,
            distill=recipe.distill,
            student_weight=recipe_student_weight(recipe, recipe.sandwich_n),
        )
        return self.step

    def fit(self, supernet, setup: Setup) -> Joslim:
        """Train ``supernet`` on GP-chosen widths (the recipe, resumable in ``setup.folder``),
        or read a finished training back; then `attach` it with the archs it visited."""
        final = None if setup.folder is None else setup.folder / "final"
        state = read_json(None if final is None else final / STATE_FILE)
        if state is not None:
            load_weights(supernet, final)
            return self.attach(supernet, setup, visited_archs(state, supernet.space))
        loader = setup.train_loader()
        refresh = setup.heldout_batches(self.options.refresh_images, self.options.refresh_images)
        step = self.training_step(supernet, loader, refresh, setup.recipe)
        trainer = setup.trainer(supernet, loader, step, setup.folder)
        setup.train(trainer, "joslim supernet", f"new widths every {step.refit_every} steps")
        supernet.activate(supernet.max_arch())
        if final is not None:
            if distributed.is_main():
                supernet.save(final)
            setup.write_json(final / STATE_FILE, step.state_dict(), indent=None)
        return self.attach(supernet, setup, list(step.archs))

    def attach(self, supernet, setup: Setup, visited: Sequence[Mapping] | None = None) -> Joslim:
        """Search the trained ``supernet``; ``visited`` are the archs its training visited
        (default: those of this method's `fit`; `visited_archs` reads them from a checkpoint)."""
        self.supernet, self.setup = supernet, setup
        self.scorer = setup.scorer(supernet, self.options.bn)
        if visited is not None:
            self.visited = [supernet.space.validate(a) for a in visited]
        elif self.step is not None and self.step.supernet is supernet:
            self.visited = list(self.step.archs)
        self._front = None
        return self

    def weights(self, budget: str | None = None):
        """Joslim's archs inherit its own supernet's weights."""
        return self.supernet

    # ------------------------------------------------------------------------------ search
    def _scored_front(self) -> tuple[list[Arch], list[Score], list[Arch], list[Score]]:
        """(visited, their batch-BN scores, the front, its scores with the method's BN)."""
        if self._front is not None:
            return self._front
        space = self.space()
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
        costs = [COSTS[self.options.cost](space, a) for a in archs]
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
        space = self.space()
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
        space = self.space()
        check_width_budgets(space, budgets)
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
        if self.setup.folder is not None:  # the report's fronts start from it (`artifacts`)
            self.setup.write_json(self.setup.folder / "front.json", self.heldout_front())
        return results

    # ------------------------------------------------------------------------------ report
    def heldout_front(self) -> list[dict[str, Any]]:
        """`front` with its scores named ``heldout_accuracy`` and ``heldout_loss``."""
        return [
            {k: v for k, v in p.items() if k not in ("accuracy", "loss")}
            | {"heldout_accuracy": p["accuracy"], "heldout_loss": p["loss"]}
            for p in self.front()
        ]

    def artifacts(
        self, setup: Setup, results: Sequence[Result], budgets: Sequence[Budget]
    ) -> dict[str, Any]:
        """``{"fronts": ...}``: Joslim's front and the two-stage baseline's (random search on
        the shared sandwich-rule supernet, when the run has it), each arch tested with its own
        supernet's weights, as `compare_fronts` sums them up; {} without a test split."""
        if not setup.data.test or setup.shared is None or setup.folder is None:
            return {}
        if self.supernet is None:
            self.fit(setup.new_supernet(), setup)
        cost, space = self.options.cost, self.supernet.space
        front = read_json(setup.folder / "front.json") or self.heldout_front()
        seen = [*(self.visited or []), *(point["arch"] for point in front)]
        fronts = {self.name: self._tested(setup, self.name, front, seen, self.supernet)}
        baseline = RandomSearch.name
        scored = read_json(setup.folder.parent / f"{baseline}.scored.json")
        if scored is not None and (setup.folder.parent / f"{baseline}.json").exists():
            scored = read_scored(scored)
            points, seen = scored_front(space, scored, cost), list(scored)
            fronts[baseline] = self._tested(setup, baseline, points, seen, setup.shared())
        return {"fronts": compare_fronts(fronts, space, budgets, cost)}

    def _tested(self, setup: Setup, name: str, front, seen, supernet) -> dict[str, Any]:
        """``front`` (held-out loss vs cost) with each arch's test top-1 after BatchNorm
        recalibration (``points``) and the cost range of the archs ``seen`` (``explored``),
        from ``search/<name>.front.json`` or computed into it. The test set only reports: the
        front was chosen on held-out data."""
        path = setup.folder.parent / f"{name}.front.json"
        saved = read_json(path)
        if saved is not None:
            return saved
        test = list(setup.loader(setup.data.test, 500, train=False))
        tested = tested_front(
            supernet, front, seen, setup.calibration(), test, self.options.cost, setup.progress
        )
        setup.write_json(path, tested)
        log.info("%s front: %d archs tested", name, len(tested["points"]))
        return tested


__all__ = [
    "JOSLIM_COSTS",
    "Joslim",
    "JoslimOptions",
    "JoslimStep",
    "ObjectiveModels",
    "WeightChoice",
    "check_width_budgets",
    "pareto_front",
    "tchebyshev",
    "visited_archs",
    "weight_search",
]
