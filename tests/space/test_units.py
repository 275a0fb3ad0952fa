"""Tests for `Arch` and `Space` (space/units.py, space/space.py): plain data, validation, JSON."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import slimnas
from slimnas.models import resnet20


@pytest.fixture(scope="module")
def space() -> slimnas.Space:
    torch.manual_seed(0)
    return slimnas.trace(resnet20(), torch.randn(1, 3, 32, 32))


class OpNet(nn.Module):
    """A conv, a `Choice` of two candidates inside a residual block, a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = slimnas.Choice(
            {
                "wide": nn.Sequential(
                    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 16, 1)
                ),
                "zero": slimnas.Zero(),
            }
        )
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.body(x)
        return self.fc(x.mean((2, 3)))


# ------------------------------------------------------------------------------------ Arch
def test_arch_is_hashable_and_equal_to_a_dict() -> None:
    a = slimnas.Arch({"b": 2, "a": "k3"})
    b = slimnas.Arch({"a": "k3", "b": 2})
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert {a: 1}[b] == 1
    assert a == {"a": "k3", "b": 2}
    assert {"b": 2, "a": "k3"} == a
    assert a != {"a": "k3", "b": 3}
    assert a != {"a": "k3"}
    assert a != slimnas.Arch({"a": "k3", "b": 3})
    assert a["b"] == 2
    assert list(a) == ["a", "b"]
    assert len(a) == 2
    with pytest.raises(KeyError):
        a["c"]
    assert a.merged({"b": 3}) == {"a": "k3", "b": 3}
    assert a == b  # merged returns a copy


def test_arch_json_round_trip(space: slimnas.Space) -> None:
    generator = torch.Generator().manual_seed(0)
    archs = [space.max_arch(), space.min_arch()] + [space.sample(generator) for _ in range(5)]
    archs.append(slimnas.Arch({"block.body": "k5", "conv": 8}))
    archs.append(slimnas.Arch())
    for arch in archs:
        text = arch.to_json()
        back = slimnas.Arch.from_json(text)
        assert back == arch
        assert hash(back) == hash(arch)
        assert json.loads(text) == dict(arch)


@pytest.mark.parametrize(
    "text",
    ['{"conv1": 16', "conv1: 16", "", "[16, 32]", '{"conv1": [16]}', '{"conv1": true}', "16"],
)
def test_arch_from_bad_json_raises_arch_error(text: str) -> None:
    with pytest.raises(slimnas.ArchError) as info:
        slimnas.Arch.from_json(text)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------- validate
def test_validate_accepts_the_space_archs(space: slimnas.Space) -> None:
    generator = torch.Generator().manual_seed(0)
    for arch in [space.max_arch(), space.min_arch(), space.sample(generator)]:
        assert space.validate(arch) == arch
        assert space.validate(dict(arch)) == arch
        assert isinstance(space.validate(dict(arch)), slimnas.Arch)
    assert set(space.max_arch()) == set(space.searchable)


def test_validate_names_an_unknown_unit(space: slimnas.Space) -> None:
    arch = space.max_arch().merged({"layer4.0.conv1": 64})
    with pytest.raises(slimnas.ArchError, match=r"'layer4\.0\.conv1'"):
        space.validate(arch)


def test_validate_names_an_out_of_range_choice(space: slimnas.Space) -> None:
    arch = space.max_arch().merged({"layer3.1.conv1": 60})
    with pytest.raises(slimnas.ArchError) as info:
        space.validate(arch)
    message = str(info.value)
    assert "'layer3.1.conv1'" in message
    assert "60" in message
    assert "[16, 24, 32, 40, 48, 56, 64]" in message
    with pytest.raises(slimnas.ArchError, match=r"'layer2'.*\[1, 2, 3\]"):
        space.validate(space.max_arch().merged({"layer2": 4}))
    # A fixed unit only accepts its one value.
    with pytest.raises(slimnas.ArchError, match=r"'fc'"):
        space.validate(space.max_arch().merged({"fc": 5}))


def test_validate_names_a_missing_unit(space: slimnas.Space) -> None:
    choices = dict(space.max_arch())
    del choices["layer2.2.conv1"]
    with pytest.raises(slimnas.ArchError, match=r"'layer2\.2\.conv1'"):
        space.validate(choices)
    with pytest.raises(slimnas.ArchError, match="missing"):
        space.validate({})


# ------------------------------------------------------------------------------ Space JSON
def test_space_json_round_trip_gives_equal_costs(space: slimnas.Space) -> None:
    torch.manual_seed(0)
    op_space = slimnas.trace(OpNet(), torch.randn(1, 3, 8, 8))
    assert op_space.op_units()
    generator = torch.Generator().manual_seed(0)
    for original in (space, op_space):
        text = original.to_json()
        back = slimnas.Space.from_json(text)
        assert back.to_json() == text
        assert list(back.units) == list(original.units)
        assert back.units == original.units
        assert back.layers == original.layers
        assert back.tensors == original.tensors
        assert back.max_arch() == original.max_arch()
        archs = [original.max_arch(), original.min_arch()]
        archs += [original.sample(generator) for _ in range(10)]
        for arch in archs:
            for cost in (slimnas.macs, slimnas.params, slimnas.peak_memory):
                assert cost(back, arch) == cost(original, arch), (cost.__name__, arch)


# ------------------------------------------------------------------------- arch builders
def test_uniform_arch_is_monotone_and_ends_at_max(space: slimnas.Space) -> None:
    ratios = [i / 20 for i in range(1, 21)]
    costs = [slimnas.macs(space, space.uniform_arch(r)) for r in ratios]
    assert all(a <= b for a, b in zip(costs, costs[1:])), costs
    assert costs[0] < costs[-1]
    assert space.uniform_arch(1.0) == space.max_arch()
    assert costs[-1] == slimnas.macs(space, space.max_arch())
    # Below the smallest choice every channel unit sits at its min; depths stay at max.
    small = space.uniform_arch(0.05)
    for unit in space.channel_units():
        assert small[unit.name] == unit.choices[0]
    for unit in space.depth_units():
        assert small[unit.name] == unit.choices[-1]
    half = space.uniform_arch(0.5)
    assert half["layer3.0.conv2"] == 32
    assert half["layer2.1.conv1"] == 16
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(slimnas.ArchError):
            space.uniform_arch(bad)


def test_sample_is_deterministic_under_a_seeded_generator(space: slimnas.Space) -> None:
    first = [space.sample(torch.Generator().manual_seed(7)) for _ in range(3)]
    gen_a = torch.Generator().manual_seed(7)
    gen_b = torch.Generator().manual_seed(7)
    run_a = [space.sample(gen_a) for _ in range(20)]
    run_b = [space.sample(gen_b) for _ in range(20)]
    assert run_a == run_b
    assert first[0] == first[1] == first[2] == run_a[0]
    assert len(set(run_a)) > 15  # the draws differ from each other
    for arch in run_a:
        assert space.validate(arch) == arch
    # Every choice of a unit is reachable.
    seen = {u.name: set() for u in space.searchable.values()}
    gen = torch.Generator().manual_seed(1)
    for _ in range(200):
        for name, value in space.sample(gen).items():
            seen[name].add(value)
    for name, values in seen.items():
        assert values == set(space.units[name].choices), name
