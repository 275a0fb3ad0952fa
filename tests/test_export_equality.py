"""Golden test: for every supported model, the exported plain module equals the supernet.

For the min, the max and 20 random archs of each model: outputs equal (eval mode, fresh random
input, max abs diff ≤ 1e-4), the exported parameter count equals `params(arch)` exactly, and its
conv + FC multiply-accumulates counted by fvcore equal `macs(arch)`.
"""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision
from fvcore.nn import FlopCountAnalysis
from torch import nn

import slimnas
from slimnas.models import mobilenet_v2, mobilenet_v2_cifar, resnet20, resnet56

CIFAR = (1, 3, 32, 32)
SMALL = (1, 3, 64, 64)
MODELS = {
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
RANDOM_ARCHS = 20


def fvcore_macs(model: nn.Module, x: torch.Tensor) -> int:
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    counts = FlopCountAnalysis(model, x).unsupported_ops_warnings(False)
    counts = counts.uncalled_modules_warnings(False).by_operator()
    return int(sum(v for k, v in counts.items() if k in ("conv", "linear", "addmm", "matmul")))


@pytest.mark.parametrize("name", list(MODELS))
def test_export_matches_supernet(name: str, randomise_bn) -> None:
    build, shape = MODELS[name]
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build().eval()
    randomise_bn(model, generator)
    space = slimnas.trace(model, torch.randn(shape))
    assert len(space.channel_units()) > 0
    supernet = slimnas.Supernet(model, space).eval()
    archs = [space.min_arch(), space.max_arch()]
    archs += [space.sample(generator) for _ in range(RANDOM_ARCHS)]
    assert len(set(archs)) > RANDOM_ARCHS // 2
    for arch in archs:
        x = torch.randn(shape, generator=generator)
        supernet.activate(arch)
        small = supernet.export(arch).eval()
        for module in small.modules():
            assert not type(module).__module__.startswith("slimnas.dynamic"), type(module)
            assert not any(k.startswith("slim_") for k in vars(module)), type(module)
        with torch.no_grad():
            expected = supernet(x)
            got = small(x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= 1e-4, arch
        assert sum(p.numel() for p in small.parameters()) == slimnas.params(space, arch)
        assert fvcore_macs(small, x) == slimnas.macs(space, arch), arch
