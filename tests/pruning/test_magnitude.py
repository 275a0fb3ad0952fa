"""Global magnitude pruning: meets its budget, shrinks with it, removes the weakest unit first."""

from __future__ import annotations

import logging

import pytest
import torch

import slimnas
from slimnas.cost.budget import Budget
from slimnas.cost.measured import module_macs
from slimnas.models import resnet20
from slimnas.pruning import filter_scores, magnitude_arch


@pytest.fixture
def supernet(randomise_bn) -> slimnas.Supernet:
    torch.manual_seed(0)
    model = resnet20().eval()
    randomise_bn(model, torch.Generator().manual_seed(0))
    space = slimnas.trace(model, torch.randn(1, 3, 32, 32))
    return slimnas.Supernet(model, space).eval()


def _channels(space: slimnas.Space, arch: slimnas.Arch) -> int:
    return sum(arch[u.name] for u in space.channel_units())


def test_meets_the_budget_and_shrinks_with_it(supernet, caplog) -> None:
    space = supernet.space
    x = torch.randn(1, 3, 32, 32)
    kept = []
    with caplog.at_level(logging.WARNING):
        for percent in (70, 50, 30):
            budget = Budget.parse(f"macs<={percent}%", space)
            arch = magnitude_arch(supernet, budget)
            assert budget.fits(space, arch)
            assert module_macs(supernet.export(arch), x) == slimnas.macs(space, arch)
            assert slimnas.macs(space, arch) > 0.9 * budget.limit  # widened back to the budget
            kept.append(_channels(space, arch))
    assert kept[0] > kept[1] > kept[2]
    assert "not the top-scored" not in caplog.text  # ranked by the same score first


def test_ranks_by_its_scores_without_changing_the_function(supernet) -> None:
    x = torch.randn(2, 3, 32, 32)
    inner = [u.name for u in supernet.space.channel_units() if u.name.endswith(".conv1")]
    filters = {n: supernet.model.get_submodule(n).weight.detach().clone() for n in inner}
    with torch.no_grad():
        before = supernet(x)
    arch = magnitude_arch(supernet, "macs<=50%")
    with torch.no_grad():
        assert (supernet(x) - before).abs().max().item() <= 1e-4
    for name, score in filter_scores(supernet).items():
        assert torch.all(score[:-1] >= score[1:]), name  # leading channels score highest
    pruned = [n for n in inner if arch[n] < supernet.space.units[n].max_channels]
    assert pruned
    for name in pruned:  # a block's inner conv now leads with its highest-L1 filters
        k = arch[name]
        kept = supernet.model.get_submodule(name).weight.detach()[:k].flatten(1).abs().sum(1)
        top = filters[name].flatten(1).abs().sum(1).sort(descending=True).values[:k]
        assert torch.allclose(kept, top), name


def test_accepts_budget_text(supernet) -> None:
    arch = magnitude_arch(supernet, "params<=60%")
    assert slimnas.params(supernet.space, arch) <= 0.6 * slimnas.params(
        supernet.space, supernet.max_arch()
    )


def test_a_unit_of_near_zero_filters_goes_first(supernet) -> None:
    weak = "layer2.1.conv1"
    with torch.no_grad():
        supernet.model.get_submodule(weak).weight.mul_(1e-3)
    space = supernet.space
    scores = filter_scores(supernet)
    assert scores[weak].max() < min(s.min() for n, s in scores.items() if n != weak)
    target = space.max_arch().merged({weak: space.units[weak].choices[0]})
    arch = magnitude_arch(supernet, Budget("macs", slimnas.macs(space, target), "test"))
    assert arch == target


def test_scores_are_normalised_per_layer(supernet) -> None:
    scores = filter_scores(supernet)
    conv = supernet.model.get_submodule("layer3.1.conv1")
    rows = conv.weight.detach().flatten(1).double()
    assert torch.allclose(scores["layer3.1.conv1"], rows.abs().sum(1) / rows.shape[1] ** 0.5)


def test_impossible_budget_is_one_line(supernet) -> None:
    with pytest.raises(slimnas.BudgetError, match="cannot be met by channel pruning"):
        magnitude_arch(supernet, "macs<=1%")


def test_warns_when_channels_are_not_ranked(supernet, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        magnitude_arch(supernet, "macs<=50%", rank=False)
    assert "call magnitude_arch with rank=True" in caplog.text
