"""Tests for train/residual_init.py: zero-initialised residual branches found in the graph."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import slimnas
from slimnas.train.residual_init import zero_init_residual_bn


def test_resnet20_branches_start_as_identity():
    model = slimnas.models.resnet20()
    zeroed = zero_init_residual_bn(model)
    assert zeroed == [f"layer{s}.{b}.bn2" for s in (1, 2, 3) for b in range(3)]
    # The projection shortcuts' BatchNorms keep their scale.
    assert torch.all(model.layer2[0].downsample[1].weight == 1)
    model.eval()
    x = torch.randn(2, 16, 8, 8)
    block = model.layer1[1]  # identity shortcut: out = relu(0 + x)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_torchvision_bottlenecks_and_inverted_residuals():
    tv = pytest.importorskip("torchvision")
    zeroed = zero_init_residual_bn(tv.models.resnet50())
    assert len(zeroed) == 16 and all(name.endswith("bn3") for name in zeroed)
    mobilenet = tv.models.mobilenet_v2()
    zeroed = zero_init_residual_bn(mobilenet)
    assert len(zeroed) == 10  # the blocks whose input and output shapes match
    for name in zeroed:
        assert torch.all(mobilenet.get_submodule(name).weight == 0)


def test_a_network_without_residuals_is_left_alone():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert zero_init_residual_bn(model) == []
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])
