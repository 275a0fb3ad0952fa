"""Subclasses of torch's layers are traced as the layers they are: timm's ``BatchNormAct2d``
(a BatchNorm with its activation inside) and ``Linear``, and any subclass that keeps the base's
forward; their channels are searched, exports equal the supernet and cost what the space says."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import slimnas
from slimnas.cost.measured import module_macs


class NormAct(nn.BatchNorm2d):
    """timm's BatchNormAct2d in miniature: batch norm, then ``drop``, then ``act``."""

    def __init__(self, channels: int):
        super().__init__(channels)
        self.drop, self.act = nn.Identity(), nn.ReLU()

    def forward(self, x):
        return self.act(self.drop(super().forward(x)))


class MyLinear(nn.Linear):
    """A subclass that keeps Linear's forward."""


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        NormAct(16),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
        NormAct(32),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        MyLinear(32, 10),
    )


def _check_exports(model: nn.Module, size: int, randomise_bn) -> slimnas.Space:
    randomise_bn(model, torch.Generator().manual_seed(1))
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    space = slimnas.trace(model.eval(), x[:1])
    supernet = slimnas.Supernet(model, space).eval()
    generator = torch.Generator().manual_seed(0)
    for arch in (space.min_arch(), space.sample(generator), space.max_arch()):
        supernet.activate(arch)
        small = supernet.export(arch).eval()
        with torch.no_grad():
            assert torch.allclose(small(x), supernet(x), atol=1e-5)
        assert module_macs(small, x) == slimnas.macs(space, arch)
    return space


def test_norm_act_and_linear_subclasses_are_searched(randomise_bn) -> None:
    space = _check_exports(_net(), 16, randomise_bn)
    assert len(space.channel_units()) == 2  # both convs' outputs, through NormAct and MyLinear
    assert slimnas.macs(space, space.min_arch()) < slimnas.macs(space, space.max_arch())


def test_a_timm_mobilenet_is_searched_through_its_norm_act_layers(randomise_bn) -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=10)
    space = _check_exports(model, 32, randomise_bn)
    searched = {unit.name.split(".")[0] for unit in space.channel_units()}
    assert "conv_stem" in searched and "conv_head" in searched  # not only the SE layers
