"""Tests for `peak_memory` and `expected_peak_memory` (cost/memory.py) on a hand-checked chain."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import slimnas

H = W = 8
BYTES = 4  # float32


class Chain(nn.Module):
    """conv 3→8 → BN → ReLU(inplace) → conv 8→16 → global pool → flatten → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv1(x)))
        return self.fc(torch.flatten(self.pool(self.conv2(x)), 1))


def hand_peak(c1: int, c2: int) -> int:
    """The documented model worked through step by step (batch 1, float32, 8x8 maps).

    A tensor lives from the op that writes it to the last op that reads it; the in-place ReLU
    writes into the BN output and adds nothing.
    """
    x = 3 * H * W * BYTES
    conv1 = c1 * H * W * BYTES
    bn = c1 * H * W * BYTES  # the ReLU reuses it
    conv2 = c2 * H * W * BYTES
    pooled = c2 * BYTES
    flat = c2 * BYTES
    fc = 10 * BYTES
    steps = [
        x,  # input
        x + conv1,  # conv1 reads x, writes conv1
        conv1 + bn,  # BN reads conv1, writes bn
        bn,  # ReLU in place
        bn + conv2,  # conv2 reads the ReLU'd bn
        conv2 + pooled,  # global pool
        pooled + flat,  # flatten (at most a copy of the pooled vector)
        flat + fc,  # linear
    ]
    return max(steps)


@pytest.fixture(scope="module")
def space() -> slimnas.Space:
    torch.manual_seed(0)
    # divisor 4 makes both units searchable: conv1 in {4, 8}, conv2 in {4, 8, 12, 16}.
    return slimnas.trace(Chain(), torch.randn(1, 3, H, W), divisor=4)


def test_units_of_the_chain(space: slimnas.Space) -> None:
    assert space.units["conv1"].choices == (4, 8)
    assert space.units["conv2"].choices == (4, 8, 12, 16)
    assert set(space.searchable) == {"conv1", "conv2"}


@pytest.mark.parametrize(
    ("c1", "c2", "expected"),
    [
        (8, 16, 6144),  # conv2 step: 8·64·4 + 16·64·4
        (8, 4, 4096),  # BN step: conv1 and bn outputs, 8·64·4 each
        (4, 16, 5120),  # conv2 step: 4·64·4 + 16·64·4
        (4, 4, 2048),  # BN and conv2 steps tie
    ],
)
def test_peak_memory_equals_the_hand_count(
    space: slimnas.Space, c1: int, c2: int, expected: int
) -> None:
    assert hand_peak(c1, c2) == expected
    assert slimnas.peak_memory(space, {"conv1": c1, "conv2": c2}) == expected
    assert slimnas.peak_memory(space, {"conv1": c1, "conv2": c2}, bytes_per_element=2) == (
        expected // 2
    )


def test_peak_memory_over_the_whole_space(space: slimnas.Space) -> None:
    for c1 in space.units["conv1"].choices:
        for c2 in space.units["conv2"].choices:
            arch = {"conv1": c1, "conv2": c2}
            assert slimnas.peak_memory(space, arch) == hand_peak(c1, c2), arch


def test_default_trace_of_the_chain() -> None:
    torch.manual_seed(0)
    space = slimnas.trace(Chain(), torch.randn(1, 3, H, W))
    assert set(space.searchable) == {"conv2"}  # 8 channels at divisor 8 cannot shrink
    assert slimnas.peak_memory(space, space.max_arch()) == hand_peak(8, 16) == 6144
    assert slimnas.peak_memory(space, {"conv2": 8}) == hand_peak(8, 8) == 4096


def test_shrinking_a_unit_lowers_peak_memory(space: slimnas.Space) -> None:
    top = space.max_arch()
    peak = slimnas.peak_memory(space, top)
    assert peak == 6144
    for name, unit in space.searchable.items():
        smaller = top.merged({name: unit.choices[0]})
        assert slimnas.peak_memory(space, smaller) < peak, name


def test_expected_peak_memory_at_one_hot_probs(space: slimnas.Space) -> None:
    for c1 in space.units["conv1"].choices:
        for c2 in space.units["conv2"].choices:
            probs = {}
            for name, value in (("conv1", c1), ("conv2", c2)):
                choices = space.units[name].choices
                p = torch.zeros(len(choices), dtype=torch.float64)
                p[choices.index(value)] = 1.0
                probs[name] = p
            got = slimnas.expected_peak_memory(space, probs)
            assert got.item() == slimnas.peak_memory(space, {"conv1": c1, "conv2": c2}), (c1, c2)


def test_expected_peak_memory_is_differentiable(space: slimnas.Space) -> None:
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64, requires_grad=True)
    value = slimnas.expected_peak_memory(space, {"conv2": p})
    value.backward()
    assert torch.isfinite(p.grad).all()
    assert (p.grad[1:] > p.grad[:-1]).all()
