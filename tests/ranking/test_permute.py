"""Channel ranking preserves the function (every golden model) and puts important channels first."""

from __future__ import annotations

import pytest
import torch
import torchvision

import slimnas
from slimnas.models import (
    mobilenet_v2,
    mobilenet_v2_cifar,
    proxyless_cifar_small,
    resnet20,
    resnet56,
)
from slimnas.ranking import channel_importance, permutable_units, rank_channels

CIFAR = (2, 3, 32, 32)
SMALL = (2, 3, 64, 64)
MODELS = {  # the golden models of tests/test_export_equality.py
    "resnet20": (lambda: resnet20(), CIFAR),
    "resnet56": (lambda: resnet56(), CIFAR),
    "resnet20_optionA": (lambda: resnet20(shortcut="A"), CIFAR),
    "mobilenet_v2_cifar": (lambda: mobilenet_v2_cifar(), CIFAR),
    "mobilenet_v2": (lambda: mobilenet_v2(), SMALL),
    "tv_resnet18": (lambda: torchvision.models.resnet18(), SMALL),
    "tv_resnet50": (lambda: torchvision.models.resnet50(), SMALL),
    "tv_mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(), SMALL),
    "tv_mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(), SMALL),
    "tv_efficientnet_b0": (lambda: torchvision.models.efficientnet_b0(), SMALL),
    "tv_regnet_x_400mf": (lambda: torchvision.models.regnet_x_400mf(), SMALL),
}
# Beyond the golden models: concatenated segments (squeezenet's fire modules) and op choices.
EXTRA = {
    "tv_squeezenet1_1": (lambda: torchvision.models.squeezenet1_1(), SMALL),
    "proxyless_cifar_small": (lambda: proxyless_cifar_small(), CIFAR),
}
MODELS.update(EXTRA)
SLOW = {"proxyless_cifar_small"}


def _supernet(name: str, randomise_bn, dtype=torch.float64):
    build, shape = MODELS[name]
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build().eval()
    randomise_bn(model, generator)
    x = torch.randn(shape, generator=generator)
    space = slimnas.trace(model, x[:1])
    return slimnas.Supernet(model.to(dtype), space).eval(), x.to(dtype)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in MODELS]
)
def test_ranking_preserves_the_function(name: str, randomise_bn) -> None:
    # float64, so that the 1e-5 bound tests the permutation and not float32 summation order
    # (randomly initialised ResNet-56 has logits of ~3e4).
    supernet, x = _supernet(name, randomise_bn)
    with torch.no_grad():
        before = supernet(x)
    ranking = supernet.rank_channels("bn")
    assert ranking.orders, name
    changed = [o for o in ranking.orders.values() if not torch.equal(o, torch.arange(len(o)))]
    assert len(changed) >= len(ranking.orders) // 2, name
    with torch.no_grad():
        after = supernet(x)
    assert (after - before).abs().max().item() <= 1e-5, name
    # Every searchable unit is ranked; only fixed units are skipped.
    assert not [u for u in ranking.skipped if supernet.space.units[u].searchable]
    # The scores come out sorted, and scoring again finds the channels in that order.
    rescored = channel_importance(supernet.model, supernet.space, "bn")
    for unit, scores in ranking.scores.items():
        blocks = scores.reshape(-1, supernet.space.units[unit].granularity).sum(1)  # whole groups
        assert torch.all(blocks[:-1] >= blocks[1:]), unit
        assert torch.allclose(rescored[unit], scores), unit
    # Exported narrower archs still equal the supernet.
    arch = supernet.space.sample(torch.Generator().manual_seed(1))
    supernet.activate(arch)
    small = supernet.export(arch).eval()
    with torch.no_grad():
        assert (small(x) - supernet(x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_narrower_arch_keeps_the_top_filters(criterion: str, randomise_bn) -> None:
    supernet, x = _supernet("resnet20", randomise_bn, torch.float32)
    conv = "layer2.1.conv1"  # a block's inner unit: one producer, one BatchNorm, one consumer
    original = supernet.model.get_submodule(conv).weight.detach().clone()
    p = 1 if criterion == "l1" else 2
    norms = original.flatten(1).norm(p=p, dim=1)
    ranking = supernet.rank_channels(criterion, side="producer")
    unit = supernet.space.units[conv]
    k = unit.choices[0]
    small = supernet.export(supernet.max_arch().merged({conv: k}))
    top = torch.argsort(norms, descending=True)[:k]
    # Its input columns belong to the stage's residual unit, which was reordered as well.
    (inputs,) = supernet.space.modules[conv]["in_units"]
    expected = original[top][:, ranking.orders[inputs]]
    assert torch.equal(small.get_submodule(conv).weight, expected)


def test_bn_ranking_orders_gammas(randomise_bn) -> None:
    supernet, x = _supernet("mobilenet_v2_cifar", randomise_bn, torch.float32)
    block = supernet.model.features[2].conv
    # The expansion conv's unit is normalised twice: after it and after the depthwise conv.
    norms = (block[0][1], block[1][1])

    def gamma() -> torch.Tensor:
        return sum(bn.weight.detach().abs() for bn in norms)

    before = gamma()
    supernet.rank_channels("bn")
    assert torch.equal(gamma(), torch.sort(before, descending=True).values)


def test_taylor_ranking_preserves_the_function(randomise_bn) -> None:
    supernet, x = _supernet("resnet20", randomise_bn, torch.float32)
    generator = torch.Generator().manual_seed(2)
    batches = [(torch.randn(8, 3, 32, 32, generator=generator), torch.arange(8)) for _ in range(2)]
    with torch.no_grad():
        before = supernet(x)
    flags = [p.requires_grad for p in supernet.parameters()]
    ranking = rank_channels(supernet, "taylor", batches=batches)
    with torch.no_grad():
        after = supernet(x)
    assert (after - before).abs().max().item() <= 1e-5
    assert len(ranking.orders) == len(supernet.space.channel_units())
    assert [p.requires_grad for p in supernet.parameters()] == flags
    assert all(p.grad is None for p in supernet.parameters())


def test_fixed_units_are_left_in_order(randomise_bn) -> None:
    supernet, _ = _supernet("resnet20_optionA", randomise_bn, torch.float32)
    units, skipped = permutable_units(supernet.space)
    assert "network output" in skipped.values()
    assert any("does not slice" in reason for reason in skipped.values())
    ranking = supernet.rank_channels("l1")
    assert set(ranking.orders) == {u.name for u in units}
    assert not set(ranking.orders) & set(skipped)


def test_unknown_criterion_is_one_line(randomise_bn) -> None:
    supernet, _ = _supernet("resnet20", randomise_bn, torch.float32)
    with pytest.raises(slimnas.ConfigError, match="unknown channel importance criterion 'l3'"):
        supernet.rank_channels("l3")
    with pytest.raises(slimnas.ConfigError, match="taylor criterion needs batches"):
        supernet.rank_channels("taylor")
