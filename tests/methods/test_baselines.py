"""Tests of the baseline searches (uniform, random, evolution) on ResNet-20's channel space."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import pytest
import torch

import slimnas
from slimnas.cost.budget import Budget
from slimnas.errors import BudgetError
from slimnas.methods.baselines import (
    BudgetSampler,
    nearest_uniform_arch,
    random_search,
    uniform_ratios,
    uniform_search,
)
from slimnas.methods.evolution import evolution_search
from slimnas.methods.scoring import ArchScorer, Score
from slimnas.models import MODELS
from slimnas.space.units import Arch

# Per-stage value of width in the synthetic objective: early layers are worth far more than late
# ones at the same MACs (every ResNet-20 stage costs about the same), so the best arch under a
# budget is wide early and narrow late, never uniform.
STAGE_WEIGHTS = {"conv1": 3.0, "layer1": 3.0, "layer2": 1.0, "layer3": 0.2}


class StageWeightedScorer:
    """A scorer with a known objective: accuracy is the stage-weighted mean channel ratio (depth
    is worth nothing).

    Records every arch it scores, to check that searches never score one twice.
    """

    def __init__(self, space: slimnas.Space):
        self.space = space
        self.scored: list[Arch] = []

    def accuracy(self, arch: Arch) -> float:
        channels = [u.name for u in self.space.channel_units()]
        weights = {name: STAGE_WEIGHTS[name.split(".")[0]] for name in channels}
        total = sum(w * arch[n] / self.space.units[n].max_channels for n, w in weights.items())
        return total / sum(weights.values())

    def score_many(self, archs: Sequence[Arch]) -> list[Score]:
        self.scored.extend(archs)
        return [Score(self.accuracy(a), 1.0 - self.accuracy(a), 100) for a in archs]


def _trace(fix_depth: bool = True) -> slimnas.Space:
    torch.manual_seed(0)
    space = slimnas.trace(MODELS["resnet20"](num_classes=10), torch.randn(1, 3, 32, 32))
    if fix_depth:
        for unit in space.depth_units():
            space = space.fix(unit.name)
    return space


@pytest.fixture(scope="module")
def space() -> slimnas.Space:
    return _trace()


@pytest.fixture(scope="module")
def budgets(space) -> list[Budget]:
    full = slimnas.macs(space, space.max_arch())
    return [Budget.parse(f"macs<={share * full / 1e6:.4f}M") for share in (0.25, 0.5)]


@pytest.fixture(scope="module")
def searches(space, budgets) -> dict[str, list]:
    """Each method once at its defaults (random at evolution's evaluation count), shared."""
    scorer = StageWeightedScorer(space)
    return {
        "uniform": uniform_search(space, budgets, scorer),
        "random": random_search(space, scorer, budgets, samples=32 * 10, progress=False),
        "evolution": evolution_search(space, scorer, budgets, progress=False),
    }


def _assert_meets(results, budgets, space) -> None:
    assert [r.budget for r in results] == [b.text for b in budgets]
    for result, budget in zip(results, budgets):
        assert result.costs[budget.metric] <= budget.limit
        assert budget.fits(space, result.arch)


def test_uniform_search_takes_the_largest_fitting_ratio(space, budgets):
    ratios = uniform_ratios(space)
    results = uniform_search(space, budgets, fill=False)
    _assert_meets(results, budgets, space)
    for result, budget in zip(results, budgets):
        ratio = result.info["ratio"]
        assert result.arch == nearest_uniform_arch(space, ratio)
        assert result.accuracy is None
        larger = ratios[ratios.index(ratio) + 1]
        assert not budget.fits(space, nearest_uniform_arch(space, larger))
        # Nearest rounding never wastes more of the budget than flooring at the same ratio.
        floor = slimnas.macs(space, space.uniform_arch(ratio))
        assert floor <= result.costs["macs"] <= budget.limit


def test_filled_uniform_widens_the_multiplier_to_the_budget(space, budgets):
    grid = uniform_search(space, budgets, fill=False)
    filled = uniform_search(space, budgets)
    _assert_meets(filled, budgets, space)
    for coarse, fine, budget in zip(grid, filled, budgets):
        assert all(fine.arch[name] >= coarse.arch[name] for name in coarse.arch)
        assert fine.info["filled"] > 0 and fine.costs["macs"] > coarse.costs["macs"]
        # No unit can widen one more step within the budget.
        for unit in space.channel_units():
            at = unit.choices.index(fine.arch[unit.name])
            if at + 1 < len(unit.choices):
                wider = {**fine.arch, unit.name: unit.choices[at + 1]}
                assert not budget.fits(space, wider)
        # Widths stay near uniform: every unit within two grid steps of the multiplier's.
        for unit in space.channel_units():
            moved = unit.choices.index(fine.arch[unit.name]) - unit.choices.index(
                coarse.arch[unit.name]
            )
            assert 0 <= moved <= 2


def test_nearest_uniform_arch_rounds_each_width_to_the_nearest_choice(space):
    arch = nearest_uniform_arch(space, 0.7)
    for unit in space.channel_units():
        target = 0.7 * unit.max_channels
        assert all(abs(arch[unit.name] - target) <= abs(c - target) for c in unit.choices)
    assert nearest_uniform_arch(space, 1.0) == space.max_arch()


def test_uniform_search_falls_back_to_the_smallest_arch():
    space = _trace(fix_depth=False)  # shallower archs fit budgets no width multiplier meets
    narrowest = slimnas.macs(space, nearest_uniform_arch(space, 0.0))
    smallest = slimnas.macs(space, space.min_arch())
    assert smallest < narrowest
    budget = Budget.parse(f"macs<={(smallest + narrowest) / 2e6:.4f}M")
    (result,) = uniform_search(space, [budget])
    assert result.info["ratio"] is None and "no uniform" in result.info["note"]
    assert result.arch == space.min_arch()


def test_infeasible_budget_raises(space):
    budget = Budget.parse("macs<=1M")  # ResNet-20's narrowest arch needs about 5.5M
    scorer = StageWeightedScorer(space)
    with pytest.raises(BudgetError, match="cannot be met"):
        uniform_search(space, [budget])
    with pytest.raises(BudgetError, match="cannot be met"):
        random_search(space, scorer, [budget], samples=4, progress=False)
    with pytest.raises(BudgetError, match="cannot be met"):
        evolution_search(space, scorer, [budget], population=4, generations=2, progress=False)


def test_sampler_uses_most_of_the_budget(space, budgets):
    for budget in budgets:
        sampler, generator = BudgetSampler(space, budget), torch.Generator().manual_seed(0)
        archs = [sampler.sample(generator) for _ in range(100)]
        costs = [budget.cost(space, a) for a in archs]
        assert max(costs) <= budget.limit
        assert statistics.median(costs) >= 0.7 * budget.limit
        assert len(set(archs)) >= 90  # varied, not one arch over and over


def test_searches_meet_budgets_and_beat_uniform(space, searches, budgets):
    for method in ("uniform", "random", "evolution"):
        _assert_meets(searches[method], budgets, space)
    for uniform, random, evolution in zip(*searches.values()):
        assert random.accuracy > uniform.accuracy
        assert evolution.accuracy > uniform.accuracy
        assert random.info["samples"] == 320


def test_evolution_matches_random_at_equal_evaluations(searches):
    for random, evolution in zip(searches["random"], searches["evolution"]):
        assert evolution.info["generations"] == 10
        assert evolution.info["evaluations"] <= random.info["samples"]
        assert evolution.accuracy >= random.accuracy


def test_evolution_improves_on_its_first_generation(space, budgets):
    kwargs = dict(population=16, parents=4, progress=False)
    first = evolution_search(space, StageWeightedScorer(space), budgets, generations=1, **kwargs)
    later = evolution_search(space, StageWeightedScorer(space), budgets, generations=6, **kwargs)
    for start, end in zip(first, later):
        assert start.info == {"evaluations": 16, "generations": 1}
        assert end.accuracy > start.accuracy


def test_evolution_never_scores_an_arch_twice(space, budgets):
    scorer = StageWeightedScorer(space)
    results = evolution_search(space, scorer, budgets, population=16, generations=6, progress=False)
    assert len(set(scorer.scored)) == len(scorer.scored)
    assert len(scorer.scored) <= sum(r.info["evaluations"] for r in results)


@pytest.mark.parametrize("method", ["random", "evolution"])
def test_searches_are_deterministic(space, budgets, method):
    def run(seed: int):
        scorer = StageWeightedScorer(space)
        if method == "random":
            return random_search(space, scorer, budgets, samples=24, seed=seed, progress=False)
        return evolution_search(
            space, scorer, budgets, population=8, generations=3, seed=seed, progress=False
        )

    first, again, other = run(0), run(0), run(1)
    assert [(r.arch, r.info) for r in first] == [(r.arch, r.info) for r in again]
    assert [r.arch for r in first] != [r.arch for r in other]


def test_searches_run_on_a_real_supernet(space, budgets):
    torch.manual_seed(0)
    supernet = slimnas.Supernet(MODELS["resnet20"](num_classes=10), space)
    batches = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))) for _ in range(2)]
    scorer = ArchScorer(supernet, batches)
    runs = {
        "uniform": uniform_search(space, budgets, scorer),
        "random": random_search(space, scorer, budgets, samples=3, progress=False),
        "evolution": evolution_search(
            space, scorer, budgets, population=3, generations=2, parents=2, progress=False
        ),
    }
    for method, results in runs.items():
        _assert_meets(results, budgets, space)
        for result in results:
            assert result.method == method
            assert 0.0 <= result.accuracy <= 1.0 and result.loss > 0


def test_random_search_samples_searchable_depths():
    space = _trace(fix_depth=False)
    scorer = StageWeightedScorer(space)
    results = random_search(space, scorer, "macs<=50%", samples=16)  # progress on: quiet here
    budget = Budget.parse("macs<=50%", space)
    _assert_meets(results, [budget], space)
    depths = {a[u.name] for a in scorer.scored for u in space.depth_units()}
    assert len(depths) > 1


def test_random_search_hands_back_every_scored_arch_without_changing_its_results(space, budgets):
    plain = random_search(space, StageWeightedScorer(space), budgets, samples=8, progress=False)
    scorer = StageWeightedScorer(space)
    scored: dict = {}
    results = random_search(space, scorer, budgets, samples=8, progress=False, scored=scored)
    assert results == plain
    assert list(scored) == list(dict.fromkeys(scorer.scored))  # every arch scored, once
    assert all(scored[a] == Score(scorer.accuracy(a), 1 - scorer.accuracy(a), 100) for a in scored)
    assert all(r.arch in scored for r in results)


class UniformFavouringScorer(StageWeightedScorer):
    """Accuracy: the mean channel ratio less five times its spread, so uniform width is hard
    to beat and random archs rarely come near it."""

    def accuracy(self, arch: Arch) -> float:
        ratios = [arch[u.name] / u.max_channels for u in self.space.channel_units()]
        return statistics.mean(ratios) - 5 * statistics.pstdev(ratios)


def test_evolution_started_from_uniform_is_never_worse_than_uniform(space, budgets):
    uniform = uniform_search(space, budgets, UniformFavouringScorer(space))
    kwargs = dict(population=8, generations=2, parents=2, progress=False)
    random_start = evolution_search(space, UniformFavouringScorer(space), budgets, **kwargs)
    scorer = UniformFavouringScorer(space)
    seeded = evolution_search(space, scorer, budgets, start="uniform", **kwargs)
    assert scorer.scored[0] == uniform[0].arch  # the first member of the first generation
    assert all(
        r.accuracy <= u.accuracy <= s.accuracy for u, r, s in zip(uniform, random_start, seeded)
    )
    assert any(r.accuracy < u.accuracy for u, r in zip(uniform, random_start))  # a real test
    _assert_meets(seeded, budgets, space)
    with pytest.raises(slimnas.ConfigError, match="evolution start must be one of"):
        evolution_search(space, scorer, budgets, start="best", **kwargs)
