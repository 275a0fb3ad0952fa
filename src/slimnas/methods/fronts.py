"""Accuracy–cost fronts of slimmable supernets, compared without retraining.

Joslim (Chin, Marculescu & Morcos, arXiv 2007.11752) compares the slimmable networks
themselves: every arch on a method's front runs with the weights its supernet learned, against
conventional slimming and a two-stage baseline (weights first, then a search with the weights
frozen), and its objective is the area under the cost–loss trade-off curve (method notes,
papers/autoslim_joslim.md §3.1, §3.5; the paper's exact area definition was not checked against
its PDF). Here a front is the Pareto front by *held-out* loss of the archs a method scored
(Joslim: the widths its training visited; the two-stage baseline: every arch random search
scored on the sandwich-rule supernet). Each front arch is then tested once with BatchNorm
recalibrated for it (notes §3.6, step 4); the test set never picks anything (the authors'
final filter keeps the test-set Pareto points, notes §3.6 step 5).

The curve between front archs is a step function: at cost c it is the test accuracy of the front
arch that a budget of c would take, the one with the lowest held-out loss among those costing at
most c (on a Pareto front, the costliest of them). Its area over a range is exact (the trapezoid
rule on a step function), divided by the range: a mean accuracy in %, over the MACs (or memory)
range that every compared method explored (from the cheapest to the costliest arch it scored),
so that no method is credited for costs it never reached.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tqdm import tqdm

from slimnas.cost.budget import Budget
from slimnas.errors import ConfigError
from slimnas.methods.result import arch_costs
from slimnas.methods.scoring import Score
from slimnas.space.space import Space
from slimnas.space.units import Arch
from slimnas.train import distributed
from slimnas.train.bn import recalibrate_bn
from slimnas.train.evaluate import Evaluation, evaluate

log = logging.getLogger(__name__)

INTERPOLATION = (
    "step: at cost c, the front arch with the lowest held-out loss among those costing at most c"
)

Point = Mapping[str, Any]


def pareto_front(losses: Sequence[float], costs: Sequence[float]) -> list[int]:
    """Indices of the points that no other point dominates (no higher loss and no higher cost,
    one of them lower), by ascending cost; of identical points the first is kept."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], losses[i], i))
    front, best = [], math.inf
    for i in order:
        if losses[i] < best:
            front.append(i)
            best = losses[i]
    return front


def scored_front(space: Space, scored: Mapping[Arch, Score], cost: str) -> list[dict[str, Any]]:
    """The Pareto front (held-out loss vs ``cost``) of scored archs, by ascending cost: each
    point holds ``arch``, every cost, ``heldout_accuracy`` and ``heldout_loss``."""
    archs = list(scored)
    costs = [arch_costs(space, a) for a in archs]
    on_front = pareto_front([scored[a].loss for a in archs], [c[cost] for c in costs])
    return [
        {
            "arch": dict(archs[i]),
            **costs[i],
            "heldout_accuracy": scored[archs[i]].accuracy,
            "heldout_loss": scored[archs[i]].loss,
        }
        for i in on_front
    ]


def evaluate_archs(
    supernet,
    archs: Sequence[Mapping],
    calibration: Sequence,
    test: Sequence,
    progress: bool = True,
) -> list[Evaluation]:
    """Top-1 and loss on ``test`` batches of each arch of ``supernet`` with its inherited
    weights, BatchNorm recalibrated on ``calibration`` first. Changes the supernet's BatchNorm
    statistics; it is left at its max arch, recalibrated."""
    show = progress and sys.stderr.isatty() and distributed.rank() == 0
    found = []
    for arch in tqdm(archs, desc="testing front", unit="arch", disable=not show):
        recalibrate_bn(supernet, arch, calibration)
        found.append(evaluate(supernet, test))
    recalibrate_bn(supernet, supernet.max_arch(), calibration)
    return found


def tested_front(
    supernet,
    front: Sequence[Mapping[str, Any]],
    seen: Sequence[Mapping],
    calibration: Sequence,
    test: Sequence,
    cost: str,
    progress: bool = True,
) -> dict[str, Any]:
    """``front``'s points (held-out loss vs ``cost``) each with its ``test_accuracy`` and
    ``test_loss`` with ``supernet``'s weights (`evaluate_archs`), and the ``explored`` cost range
    of the archs ``seen`` (`explored_range`): what `compare_fronts` reads of one method. The test
    set only reports: the front was chosen on held-out data."""
    found = evaluate_archs(supernet, [p["arch"] for p in front], calibration, test, progress)
    points = [
        dict(p) | {"test_accuracy": e.accuracy, "test_loss": e.loss} for p, e in zip(front, found)
    ]
    return {"explored": explored_range(supernet.space, seen, cost), "points": points}


def pick_curve(points: Sequence[Point], cost: str) -> list[tuple[float, float]]:
    """``(cost, test accuracy)`` of the points a budget on ``cost`` can pick, by ascending
    cost: those with a lower held-out loss than every cheaper point. At any cost c the
    costliest of them within c is the point with the lowest held-out loss within c."""
    keep = pareto_front([p["heldout_loss"] for p in points], [p[cost] for p in points])
    return [(points[i][cost], points[i]["test_accuracy"]) for i in keep]


def step_accuracy(front: Sequence[tuple[float, float]], cost: float) -> float:
    """The curve's accuracy at ``cost``: that of the costliest ``(cost, accuracy)`` point
    within it (on a `pick_curve`, the one a budget of ``cost`` picks)."""
    within = [p for p in sorted(front) if p[0] <= cost]
    if not within:
        raise ConfigError(f"no front point costs at most {cost}; start the range at the cheapest")
    return within[-1][1]


def explored_range(space: Space, archs: Sequence[Mapping], cost: str) -> list[float]:
    """``[lowest, highest]`` ``cost`` of the archs a method scored: the range its front speaks
    for (its cheapest arch is always on the front; past its costliest front arch, every
    arch it saw was worse on held-out data)."""
    costs = [arch_costs(space, a)[cost] for a in archs]
    return [min(costs), max(costs)]


def common_range(spans: Sequence[Sequence[float]]) -> tuple[float, float] | None:
    """The part of every ``(low, high)`` cost range that all share; None when they do not
    overlap (or there are none)."""
    if not spans:
        return None
    low, high = max(s[0] for s in spans), min(s[1] for s in spans)
    return (low, high) if low <= high else None


def front_auc(front: Sequence[tuple[float, float]], low: float, high: float) -> float:
    """The mean accuracy, in %, of the front's step curve (`step_accuracy`) over
    [``low``, ``high``]: its area divided by the range (the value at ``low`` when the range is
    a point). Accuracies are fractions in [0, 1].

    Raises:
        ConfigError: ``high < low``, or the front has no point at or below ``low``.
    """
    if high < low:
        raise ConfigError(f"the range of a front's area must not be empty, got [{low}, {high}]")
    if high == low:
        return 100.0 * step_accuracy(front, low)
    edges = sorted({low, high, *(c for c, _ in front if low < c < high)})
    area = sum((b - a) * step_accuracy(front, a) for a, b in zip(edges, edges[1:]))
    return 100.0 * area / (high - low)


def best_within(front: Sequence[Point], fits: Callable[[Point], bool]) -> Point | None:
    """The front point that ``fits`` with the lowest held-out loss; None when none fits."""
    fitting = [p for p in front if fits(p)]
    return min(fitting, key=lambda p: p["heldout_loss"]) if fitting else None


def compare_fronts(
    fronts: Mapping[str, Mapping[str, Any]], space: Space, budgets: Sequence[Budget], cost: str
) -> dict[str, Any]:
    """What the report shows of tested fronts (per method, ``points`` with ``arch``, costs,
    ``heldout_loss`` and ``test_accuracy``, and the ``explored`` cost range): per method its
    points, its `pick_curve` (``curve``), the mean test top-1 of the curve over the explored
    range all methods share (`front_auc`; None without overlap) and, per budget, the test
    top-1 and costs of the point it picks (`best_within`)."""
    curves = {m: pick_curve(front["points"], cost) for m, front in fronts.items()}
    span = common_range([front["explored"] for front in fronts.values()])
    methods = {}
    for method, front in fronts.items():
        points = front["points"]
        picks = {}
        for budget in budgets:
            best = best_within(points, lambda p, b=budget: b.fits(space, Arch(p["arch"])))
            picks[budget.text] = None if best is None else _picked(best)
        methods[method] = {
            "points": list(points),
            "explored": list(front["explored"]),
            "curve": [list(c) for c in curves[method]],
            "auc": None if span is None else front_auc(curves[method], *span),
            "budgets": picks,
        }
    limits = {b.text: b.limit for b in budgets if b.metric == cost}
    return {
        "cost": cost,
        "interpolation": INTERPOLATION,
        "range": None if span is None else list(span),
        "limits": limits,
        "methods": methods,
    }


def _picked(point: Point) -> dict[str, Any]:
    keys = ("macs", "params", "memory", "heldout_accuracy", "test_accuracy")
    return {k: point[k] for k in keys if k in point}


__all__ = [
    "pareto_front",
    "INTERPOLATION",
    "best_within",
    "pick_curve",
    "common_range",
    "compare_fronts",
    "evaluate_archs",
    "explored_range",
    "front_auc",
    "scored_front",
    "step_accuracy",
    "tested_front",
]
