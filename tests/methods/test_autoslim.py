"""Tests of methods/autoslim.py: the greedy slimming path, budgets, resume, and AutoSlim end to end.

The greedy search runs on ResNet-20's real channel space with synthetic scorers whose accuracy is
a known function of the arch, so the path it must take can be replayed by hand.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
import torch

import slimnas
from slimnas.cost.budget import Budget
from slimnas.methods.autoslim import AutoSlim, greedy_slim, shrink_candidates
from slimnas.methods.scoring import Score
from slimnas.models import MODELS
from slimnas.space.units import Arch, ChannelUnit, DepthUnit
from tests.helpers.search import tiny_data, tiny_setup


class Killed(Exception):
    """Stands for the process being killed in the middle of a search."""


class RuleScorer:
    """accuracy = 1 − Σ_u w_u (1 − c_u / max_u)², with distinct weights per channel unit;
    loss = 1 − accuracy. Raises `Killed` on the call after ``kill_after`` calls."""

    def __init__(self, space: slimnas.Space, kill_after: int | None = None):
        units = space.channel_units()
        draws = torch.rand(len(units), generator=torch.Generator().manual_seed(0))
        self.weights = {u.name: (0.5 + float(d)) / len(units) for u, d in zip(units, draws)}
        self.space = space
        self.kill_after = kill_after
        self.calls = 0
        self.scored = 0

    def accuracy(self, arch: Arch) -> float:
        units = self.space.units
        return 1.0 - sum(
            w * (1.0 - arch[n] / units[n].max_channels) ** 2 for n, w in self.weights.items()
        )

    def score_many(self, archs: Sequence[Arch]) -> list[Score]:
        if self.kill_after is not None and self.calls >= self.kill_after:
            raise Killed
        self.calls += 1
        self.scored += len(archs)
        return [Score(self.accuracy(a), 1.0 - self.accuracy(a), 100) for a in archs]


class StepScorer:
    """Scores from the steps each unit was shrunk by: every step of a unit in ``free`` costs no
    accuracy, any other step 0.1; ``loss`` adds ``free[unit]`` per step of a free unit. So the
    free units tie on accuracy and their losses break the tie; the others tie on both."""

    def __init__(self, space: slimnas.Space, free: dict[str, float]):
        self.space, self.free = space, free

    def steps(self, arch: Arch, name: str) -> int:
        unit = self.space.units[name]
        return len(unit.choices) - 1 - unit.choices.index(arch[name])

    def score_many(self, archs: Sequence[Arch]) -> list[Score]:
        out = []
        for arch in archs:
            names = [u.name for u in self.space.channel_units()]
            other = sum(self.steps(arch, n) for n in names if n not in self.free)
            loss = 1.0 + sum(cost * self.steps(arch, n) for n, cost in self.free.items())
            out.append(Score(1.0 - 0.1 * other, loss, 100))
        return out


def resnet20_space(fix_depth: bool = True) -> slimnas.Space:
    torch.manual_seed(0)
    space = slimnas.trace(MODELS["resnet20"](num_classes=10), torch.randn(1, 3, 32, 32))
    if fix_depth:
        for unit in space.depth_units():
            space = space.fix(unit.name)
    return space


@pytest.fixture(scope="module")
def space() -> slimnas.Space:
    return resnet20_space()


@pytest.fixture(scope="module")
def deep_space() -> slimnas.Space:
    return resnet20_space(fix_depth=False)


def budgets_of(space: slimnas.Space, *texts: str) -> list[Budget]:
    return [Budget.parse(text, space) for text in texts]


def replay(space: slimnas.Space, scorer: RuleScorer, budgets: Sequence[Budget]):
    """The greedy path by hand: the units shrunk, and the first arch on it meeting each budget."""
    arch, units, found = space.max_arch(), [], {}
    while True:
        for i, budget in enumerate(budgets):
            if i not in found and budget.fits(space, arch):
                found[i] = arch
        if len(found) == len(budgets):
            return units, [found[i] for i in range(len(budgets))]
        options = {
            u.name: arch.merged({u.name: u.choices[u.choices.index(arch[u.name]) - 1]})
            for u in space.channel_units()
            if arch[u.name] != u.choices[0]
        }
        ranked = sorted(options, key=lambda n: scorer.accuracy(options[n]), reverse=True)
        first, second = (scorer.accuracy(options[n]) for n in (ranked + ranked)[:2])
        assert len(ranked) == 1 or first > second  # no tie: the rule alone decides
        units.append(ranked[0])
        arch = options[ranked[0]]


# ---------------------------------------------------------------------------- shrink_candidates
def test_shrink_candidates_take_one_step_down_per_channel_unit(space):
    units = space.channel_units()
    arch = space.max_arch().merged({"conv1": 8, "layer2.0.conv1": 8, "layer3.1.conv1": 40})
    candidates = shrink_candidates(space, arch)
    assert [name for name, _ in candidates] == [
        u.name
        for u in units
        if u.name not in ("conv1", "layer2.0.conv1")  # at their min
    ]
    for name, candidate in candidates:
        unit = space.units[name]
        changed = [n for n in arch if candidate[n] != arch[n]]
        assert changed == [name]
        assert unit.choices.index(candidate[name]) == unit.choices.index(arch[name]) - 1
    assert dict(candidates)["layer3.1.conv1"]["layer3.1.conv1"] == 32
    assert shrink_candidates(space, space.min_arch()) == []


def test_shrink_candidates_include_depth_units_only_when_asked(deep_space):
    arch = deep_space.max_arch()
    channels = [u.name for u in deep_space.channel_units()]
    depths = [u.name for u in deep_space.depth_units()]
    assert [name for name, _ in shrink_candidates(deep_space, arch)] == channels
    with_depth = shrink_candidates(deep_space, arch, depth=True)
    assert [name for name, _ in with_depth] == list(deep_space.searchable)
    assert sorted(name for name, _ in with_depth) == sorted(channels + depths)
    for name, candidate in with_depth:
        if isinstance(deep_space.units[name], DepthUnit):
            assert candidate == arch.merged({name: arch[name] - 1})
    shallow = arch.merged({d: deep_space.units[d].choices[0] for d in depths})
    assert all(
        isinstance(deep_space.units[n], ChannelUnit)
        for n, _ in shrink_candidates(deep_space, shallow, depth=True)
    )


# ---------------------------------------------------------------------------------- greedy path
def test_greedy_path_follows_the_scoring_rule(space):
    scorer = RuleScorer(space)
    budgets = budgets_of(space, "macs<=50%", "macs<=25%")
    results = greedy_slim(space, scorer, budgets, progress=False)
    units, archs = replay(space, scorer, budgets)
    trajectory = results[0].info["trajectory"]
    assert trajectory[0]["unit"] is None
    assert [point["unit"] for point in trajectory[1:]] == units
    assert [r.arch for r in results] == archs
    for result in results:
        assert result.method == "autoslim"
        assert result.accuracy == scorer.accuracy(result.arch)
        assert result.loss == 1.0 - scorer.accuracy(result.arch)
    # Each iteration scored every candidate; the max arch once at the start.
    assert results[0].info["evaluations"] == scorer.scored
    assert results[0].info["iterations"] == len(units) == scorer.calls - 1
    # The front only loses accuracy and MACs as the search goes.
    assert all(a["macs"] > b["macs"] for a, b in zip(trajectory, trajectory[1:]))
    assert all(a["accuracy"] > b["accuracy"] for a, b in zip(trajectory, trajectory[1:]))


def test_ties_go_to_the_lower_loss_then_the_unit_order(space):
    # layer2.0.conv1 and layer3.0.conv1 shrink for free; layer3.0.conv1's steps cost less loss.
    free = {"layer2.0.conv1": 0.2, "layer3.0.conv1": 0.1}
    budgets = budgets_of(space, "macs<=30%")
    results = greedy_slim(space, StepScorer(space, free), budgets, progress=False)
    units = [point["unit"] for point in results[0].info["trajectory"][1:]]
    low, high = space.units["layer3.0.conv1"], space.units["layer2.0.conv1"]
    expected = ["layer3.0.conv1"] * (len(low.choices) - 1) + ["layer2.0.conv1"] * (
        len(high.choices) - 1
    )
    # Then every other unit ties on accuracy and loss: the first in the space's order goes first,
    # down to its min, before the next.
    for unit in space.channel_units():
        if unit.name not in free:
            expected += [unit.name] * (len(unit.choices) - 1)
    assert units == expected[: len(units)]
    assert len(units) > len(low.choices) + len(high.choices)  # reached the plain ties


# -------------------------------------------------------------------------------------- budgets
def test_every_budget_is_met_in_the_order_given(space):
    texts = ("macs<=40%", "params<=50%", "macs<=100%", "macs<=20%", "macs<=70%")
    budgets = budgets_of(space, *texts)
    results = greedy_slim(space, RuleScorer(space), budgets, progress=False)
    assert [r.budget for r in results] == list(texts)
    for result, budget in zip(results, budgets):
        assert result.costs[budget.metric] <= budget.limit
        assert budget.fits(space, result.arch)
    # The max arch meets 100 %: found before any shrinking.
    assert results[2].arch == space.max_arch() and results[2].info["iteration"] == 0
    # Found in one pass: a looser MACs budget never gets a smaller arch than a tighter one.
    pairs = sorted(
        (b.limit, r.costs["macs"]) for b, r in zip(budgets, results) if b.metric == "macs"
    )
    macs = [cost for _, cost in pairs]  # tightest budget first
    assert all(tighter < looser for tighter, looser in zip(macs, macs[1:]))
    # Only the first result carries the front, and all share the pass's counts.
    assert "trajectory" in results[0].info and "trajectory" not in results[1].info
    assert len({r.info["evaluations"] for r in results}) == 1
    # Each budget's arch is the first on the path to meet it: one step earlier did not.
    trajectory = results[0].info["trajectory"]
    for result, budget in zip(results, budgets):
        iteration = result.info["iteration"]
        assert trajectory[iteration][budget.metric] == result.costs[budget.metric]
        if iteration:
            assert trajectory[iteration - 1][budget.metric] > budget.limit


def test_infeasible_budget_is_refused_before_scoring(space):
    scorer = RuleScorer(space)
    budgets = [Budget.parse("macs<=50%", space), Budget.parse("macs<=1M")]
    with pytest.raises(slimnas.BudgetError, match="cannot be met"):
        greedy_slim(space, scorer, budgets, progress=False)
    assert scorer.calls == 0


def test_budget_only_shallower_archs_meet_is_refused_before_scoring(deep_space):
    full_depth = {u.name: u.choices[-1] for u in deep_space.depth_units()}
    narrowest = slimnas.macs(deep_space, deep_space.min_arch().merged(full_depth))
    smallest = slimnas.macs(deep_space, deep_space.min_arch())
    assert smallest < narrowest
    budget = Budget.parse(f"macs<={(smallest + narrowest) / 2e6:.4f}M")
    scorer = RuleScorer(deep_space)
    with pytest.raises(slimnas.BudgetError):
        greedy_slim(deep_space, scorer, [budget], depth=False, progress=False)
    assert scorer.calls == 0


# --------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("kill_after", [1, 4, 15])
def test_a_killed_search_resumes_to_the_same_results(space, tmp_path, kill_after):
    budgets = budgets_of(space, "macs<=50%", "params<=60%", "macs<=25%")
    whole = RuleScorer(space)
    expected = greedy_slim(space, whole, budgets, progress=False)
    assert whole.calls > kill_after + 1

    state = tmp_path / "autoslim.json"
    with pytest.raises(Killed):
        greedy_slim(space, RuleScorer(space, kill_after), budgets, state_path=state, progress=False)
    assert json.loads(state.read_text())["iteration"] == kill_after - 1

    fresh = RuleScorer(space)
    resumed = greedy_slim(space, fresh, budgets, state_path=state, progress=False)
    assert fresh.calls == whole.calls - kill_after  # it went on, not from the start
    assert [(r.arch, r.accuracy, r.loss) for r in resumed] == [
        (r.arch, r.accuracy, r.loss) for r in expected
    ]
    assert [r.info for r in resumed] == [r.info for r in expected]  # evaluations, trajectory
    # A finished state gives the results again without scoring.
    again = RuleScorer(space)
    assert greedy_slim(space, again, budgets, state_path=state, progress=False) == resumed
    assert again.calls == 0


def test_a_state_of_other_budgets_is_refused(space, tmp_path):
    state = tmp_path / "autoslim.json"
    greedy_slim(space, RuleScorer(space), budgets_of(space, "macs<=60%"), state_path=state)
    scorer = RuleScorer(space)
    with pytest.raises(slimnas.CheckpointError, match="another space or other budgets"):
        greedy_slim(space, scorer, budgets_of(space, "macs<=50%"), state_path=state)
    with pytest.raises(slimnas.CheckpointError, match="another space or other budgets"):
        greedy_slim(space, scorer, budgets_of(space, "macs<=60%"), depth=True, state_path=state)
    assert scorer.calls == 0


def test_a_corrupted_state_is_refused(space, tmp_path):
    state = tmp_path / "autoslim.json"
    budgets = budgets_of(space, "macs<=60%")
    greedy_slim(space, RuleScorer(space), budgets, state_path=state, progress=False)
    text = state.read_text()
    state.write_text(text[: len(text) // 2])
    with pytest.raises(slimnas.CheckpointError, match="delete it to search afresh"):
        greedy_slim(space, RuleScorer(space), budgets, state_path=state, progress=False)


def test_a_state_that_is_not_a_json_object_is_refused(space, tmp_path):
    state = tmp_path / "autoslim.json"
    state.write_text("[]\n")
    with pytest.raises(slimnas.CheckpointError):
        greedy_slim(space, RuleScorer(space), budgets_of(space, "macs<=60%"), state_path=state)


# ------------------------------------------------------------------------------------- AutoSlim
def run_autoslim(space: slimnas.Space, train: int, heldout: int, **options):
    torch.manual_seed(0)
    supernet = slimnas.Supernet(MODELS["resnet20"](num_classes=10), space)
    setup = tiny_setup(data=tiny_data(train, heldout), batch_size=64)
    method = AutoSlim(**options).fit(supernet, setup)
    return space, method, method.search(["macs<=60%", "macs<=30%"])


def check_autoslim(space, method, results) -> None:
    budgets = budgets_of(space, "macs<=60%", "macs<=30%")
    assert [r.budget for r in results] == ["macs<=60%", "macs<=30%"]
    for result, budget in zip(results, budgets):
        assert result.method == "autoslim"
        assert result.costs["macs"] <= budget.limit
        assert 0.0 <= result.accuracy <= 1.0 and result.loss > 0
    assert results[0].costs["macs"] > results[1].costs["macs"]
    assert method.scorer.evaluations == results[0].info["evaluations"]
    assert method.supernet.arch == space.max_arch()


def test_autoslim_searches_a_fitted_supernet(space):
    # Two widths per channel unit (half and max) keep the search to a few dozen scorings.
    small = space
    for unit in space.channel_units():
        small = small.with_choices(unit.name, [unit.max_channels // 2, unit.max_channels])
    check_autoslim(*run_autoslim(small, train=128, heldout=32))


@pytest.mark.slow
def test_autoslim_searches_a_fitted_supernet_at_full_size(space):
    check_autoslim(*run_autoslim(space, train=512, heldout=256))


def test_autoslim_search_before_fit_is_refused():
    with pytest.raises(slimnas.ConfigError, match="before search"):
        AutoSlim().search(["macs<=50%"])
