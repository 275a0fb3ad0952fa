"""Tests for `macs`, `flops`, `params` and their expected forms (cost/counting.py)."""

from __future__ import annotations

import functools
import time

import pytest
import torch

import slimnas
from slimnas.models import mobilenet_v2, resnet20, resnet56

CIFAR = (1, 3, 32, 32)


BUILDS = {
    "resnet20-A": lambda: resnet20(shortcut="A"),
    "resnet56-A": lambda: resnet56(shortcut="A"),
    "resnet20-B": lambda: resnet20(shortcut="B"),
    "resnet56-B": lambda: resnet56(shortcut="B"),
}


@functools.cache
def traced(name: str):
    """The model and its space, traced once per test session (tests do not change either)."""
    torch.manual_seed(0)
    model = BUILDS[name]()
    return model, slimnas.trace(model, torch.randn(CIFAR))


@pytest.fixture
def resnet20_b():
    return traced("resnet20-B")


@pytest.fixture
def resnet56_b():
    return traced("resnet56-B")


# ------------------------------------------------------------------------------------ anchors
@pytest.mark.parametrize(
    ("name", "expected_macs"),
    [
        ("resnet20-A", 40_551_040),
        ("resnet56-A", 125_485_696),
        ("resnet20-B", 40_813_184),
        ("resnet56-B", 125_747_840),
    ],
)
def test_cifar_resnet_anchors(name: str, expected_macs: int) -> None:
    model, space = traced(name)
    arch = space.max_arch()
    assert slimnas.macs(space, arch) == expected_macs
    assert round(slimnas.macs(space, arch) / 1e6, 2) == round(expected_macs / 1e6, 2)
    assert slimnas.flops(space, arch) == 2 * expected_macs
    assert slimnas.params(space, arch) == sum(p.numel() for p in model.parameters())


def test_mobilenet_v2_imagenet_anchor() -> None:
    torch.manual_seed(0)
    model = mobilenet_v2()
    space = slimnas.trace(model, torch.randn(1, 3, 224, 224))
    arch = space.max_arch()
    assert slimnas.macs(space, arch) == 300_774_272
    assert slimnas.flops(space, arch) == 2 * 300_774_272
    assert slimnas.params(space, arch) == sum(p.numel() for p in model.parameters()) == 3_504_872


def test_flops_are_twice_macs_everywhere(resnet20_b) -> None:
    _, space = resnet20_b
    generator = torch.Generator().manual_seed(0)
    for arch in [space.min_arch()] + [space.sample(generator) for _ in range(10)]:
        assert slimnas.flops(space, arch) == 2 * slimnas.macs(space, arch)


def test_smaller_archs_cost_less(resnet20_b) -> None:
    _, space = resnet20_b
    top = space.max_arch()
    base = slimnas.macs(space, top), slimnas.params(space, top)
    for name, unit in space.searchable.items():
        arch = top.merged({name: unit.choices[0]})
        assert slimnas.macs(space, arch) < base[0], name
        assert slimnas.params(space, arch) < base[1], name
    # One block of layer3 dropped: two 3x3 64->64 convs at 8x8, two BNs.
    arch = top.merged({"layer3": 2})
    assert base[0] - slimnas.macs(space, arch) == 2 * 9 * 64 * 64 * 64
    assert base[1] - slimnas.params(space, arch) == 2 * 9 * 64 * 64 + 2 * 2 * 64


def test_cost_query_is_fast(resnet56_b) -> None:
    _, space = resnet56_b
    arch = space.sample(torch.Generator().manual_seed(0))
    slimnas.macs(space, arch)
    start = time.perf_counter()
    for _ in range(200):
        slimnas.macs(space, arch)
    mean = (time.perf_counter() - start) / 200
    assert mean < 1e-3, f"{mean * 1e3:.3f} ms per macs() call"


# ------------------------------------------------------------------------------ expected
def one_hot(space: slimnas.Space, arch: slimnas.Arch) -> dict[str, torch.Tensor]:
    probs = {}
    for name, unit in space.searchable.items():
        p = torch.zeros(len(unit.choices), dtype=torch.float64)
        p[unit.choices.index(arch[name])] = 1.0
        probs[name] = p
    return probs


@pytest.mark.parametrize("fixture", ["resnet20_b", "resnet56_b"])
def test_expected_costs_at_one_hot_probs_are_exact(fixture: str, request) -> None:
    _, space = request.getfixturevalue(fixture)
    generator = torch.Generator().manual_seed(0)
    archs = [space.max_arch(), space.min_arch()] + [space.sample(generator) for _ in range(5)]
    for arch in archs:
        probs = one_hot(space, arch)
        assert any(isinstance(space.units[n], slimnas.DepthUnit) for n in probs)
        assert expected_item(slimnas.expected_macs(space, probs)) == slimnas.macs(space, arch)
        assert expected_item(slimnas.expected_params(space, probs)) == slimnas.params(space, arch)


def expected_item(value: torch.Tensor) -> float:
    assert isinstance(value, torch.Tensor)
    return value.item()


def test_expected_macs_has_a_finite_gradient(resnet20_b) -> None:
    _, space = resnet20_b
    generator = torch.Generator().manual_seed(0)
    probs = {}
    for name, unit in space.searchable.items():
        logits = torch.randn(len(unit.choices), generator=generator, dtype=torch.float64)
        probs[name] = logits.softmax(0).requires_grad_(True)
    value = slimnas.expected_macs(space, probs)
    value.backward()
    for name in ("layer3.0.conv2", "layer2.1.conv1", "layer1"):
        grad = probs[name].grad
        assert grad is not None, name
        assert torch.isfinite(grad).all(), name
        # Larger choices cost more: the gradient grows along the ordered choices.
        assert (grad[1:] > grad[:-1]).all(), (name, grad)
    assert slimnas.macs(space, space.min_arch()) <= value.item()
    assert value.item() <= slimnas.macs(space, space.max_arch())


def test_expected_macs_is_linear_in_a_depth_unit(resnet20_b) -> None:
    _, space = resnet20_b
    base = space.sample(torch.Generator().manual_seed(3))
    unit = space.units["layer2"]
    hard = torch.tensor(
        [float(slimnas.macs(space, base.merged({"layer2": d}))) for d in unit.choices],
        dtype=torch.float64,
    )
    assert len(set(hard.tolist())) == len(unit.choices)
    for p in ([0.2, 0.3, 0.5], [0.6, 0.0, 0.4], [1 / 3, 1 / 3, 1 / 3]):
        probs = torch.tensor(p, dtype=torch.float64)
        got = slimnas.expected_macs(space, {"layer2": probs}, base=base)
        assert got.item() == pytest.approx((probs * hard).sum().item(), rel=1e-12)
        params_hard = torch.tensor(
            [float(slimnas.params(space, base.merged({"layer2": d}))) for d in unit.choices],
            dtype=torch.float64,
        )
        got = slimnas.expected_params(space, {"layer2": probs}, base=base)
        assert got.item() == pytest.approx((probs * params_hard).sum().item(), rel=1e-12)


def test_expected_costs_reject_wrong_probability_lengths(resnet20_b) -> None:
    _, space = resnet20_b
    with pytest.raises((ValueError, slimnas.SlimnasError), match="layer1"):
        slimnas.expected_macs(space, {"layer1": torch.ones(5) / 5})
