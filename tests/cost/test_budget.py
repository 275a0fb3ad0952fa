"""Tests for `Budget` (cost/budget.py): parsing, feasibility, and `fits`."""

from __future__ import annotations

import pytest
import torch

import slimnas
from slimnas import Budget, BudgetError
from slimnas.models import resnet20


@pytest.fixture(scope="module")
def space() -> slimnas.Space:
    torch.manual_seed(0)
    return slimnas.trace(resnet20(), torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize(
    ("text", "metric", "limit"),
    [
        ("macs<=20M", "macs", 20e6),
        ("flops<=1.5G", "flops", 1.5e9),
        ("params<=0.3M", "params", 0.3e6),
        ("memory<=1.5MB", "memory", 1.5e6),
        ("memory<=2MiB", "memory", 2 * 2**20),
        ("memory<=512KiB", "memory", 512 * 1024),
        ("macs<=40000000", "macs", 40e6),
        ("params<=250K", "params", 250e3),
        (" macs <= 20M ", "macs", 20e6),
    ],
)
def test_parse(text: str, metric: str, limit: float) -> None:
    budget = Budget.parse(text)
    assert budget.metric == metric
    assert budget.limit == pytest.approx(limit, rel=1e-12)
    assert budget.text == text.strip()


def test_parse_budgets_takes_one_or_many() -> None:
    assert slimnas.parse_budgets("macs<=20M") == [Budget.parse("macs<=20M")]
    many = slimnas.parse_budgets(["macs<=20M", "params<=0.3M"])
    assert [b.metric for b in many] == ["macs", "params"]


@pytest.mark.parametrize(
    "text",
    ["macs<20M", "speed<=3", "macs<=20Q", "macs<=-1M", "macs<=0", "macs<=", "", "memory<=2M"],
)
def test_malformed_budgets_raise_one_line(text: str) -> None:
    with pytest.raises(BudgetError) as info:
        Budget.parse(text)
    message = str(info.value)
    assert "\n" not in message
    assert repr(text) in message or repr(text.strip()) in message
    assert isinstance(info.value, slimnas.SlimnasError)


def test_infeasible_budget_names_the_smallest_macs(space: slimnas.Space) -> None:
    smallest = slimnas.macs(space, space.min_arch())
    assert smallest > 1e6
    budget = Budget.parse("macs<=1M")
    with pytest.raises(BudgetError) as info:
        budget.check_feasible(space)
    message = str(info.value)
    assert f"{smallest / 1e6:.4g}M" in message
    assert "'macs<=1M'" in message
    assert "\n" not in message
    assert budget.smallest(space) == (space.min_arch(), smallest)


def test_infeasible_memory_budget_names_the_smallest_memory(space: slimnas.Space) -> None:
    smallest = slimnas.peak_memory(space, space.min_arch())
    with pytest.raises(BudgetError, match=f"{smallest / 1e6:.4g}MB"):
        Budget.parse("memory<=1KB").check_feasible(space)


def test_feasible_budgets_pass(space: slimnas.Space) -> None:
    smallest = slimnas.macs(space, space.min_arch())
    for text in ("macs<=20M", "macs<=41M", f"macs<={smallest}", "params<=0.3M", "flops<=1G"):
        Budget.parse(text).check_feasible(space)


def test_fits_agrees_with_cost(space: slimnas.Space) -> None:
    generator = torch.Generator().manual_seed(0)
    archs = [space.min_arch(), space.max_arch()] + [space.sample(generator) for _ in range(30)]
    costs = {
        "macs": slimnas.macs,
        "flops": slimnas.flops,
        "params": slimnas.params,
        "memory": slimnas.peak_memory,
    }
    budgets = ["macs<=20M", "flops<=40M", "params<=0.15M", "memory<=0.15MB"]
    for text in budgets:
        budget = Budget.parse(text)
        outcomes = set()
        for arch in archs:
            cost = costs[budget.metric](space, arch)
            assert budget.cost(space, arch) == cost
            assert budget.fits(space, arch) == (cost <= budget.limit), (text, cost)
            outcomes.add(budget.fits(space, arch))
        assert outcomes == {True, False}, text  # the budget splits the archs
    # The boundary itself fits.
    exact = slimnas.macs(space, archs[2])
    assert Budget.parse(f"macs<={exact}").fits(space, archs[2])
    assert not Budget.parse(f"macs<={exact - 1}").fits(space, archs[2])
