"""Every torchvision classification model: trace, export at 12 archs, compare (issue: Any CNN).

For each model: the min, the max and 10 random archs (random depths included where the model has
depth units); the exported plain module's output equals the supernet's (eval mode, fresh random
input, max abs diff ≤ 1e-4); its parameter count equals `params(arch)` and its conv + linear
MACs, counted by forward hooks on the modules that run, equal `macs(arch)`. Large models run only
with ``-m slow``.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

import slimnas

NAMES = torchvision.models.list_models(module=torchvision.models)
TRANSFORMERS = ("vit", "swin", "maxvit")
# Over ~25 M parameters, or 224x224 transformers: behind the slow marker to keep the default run
# short on 2 cores.
SLOW = {
    "alexnet",
    "convnext_base",
    "convnext_large",
    "convnext_small",
    "densenet161",
    "densenet201",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnet_v2_l",
    "efficientnet_v2_m",
    "inception_v3",
    "regnet_x_16gf",
    "regnet_x_32gf",
    "regnet_x_8gf",
    "regnet_y_128gf",
    "regnet_y_16gf",
    "regnet_y_32gf",
    "regnet_y_8gf",
    "resnet101",
    "resnet152",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "resnext50_32x4d",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "wide_resnet101_2",
    "wide_resnet50_2",
    "densenet169",
    "efficientnet_b4",
    "resnet50",
    "convnext_tiny",
} | {n for n in NAMES if n.startswith(TRANSFORMERS)}
RANDOM_ARCHS = 10


def input_size(name: str) -> int:
    if name == "inception_v3":
        return 299
    if name.startswith(TRANSFORMERS):
        return 224
    return 64


def build(name: str) -> torch.nn.Module:
    kwargs = {"init_weights": False} if name in ("googlenet", "inception_v3") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchvision.models.get_model(name, **kwargs)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NAMES]
)
def test_zoo_model_exports_exactly(name: str, randomise_bn, hook_macs) -> None:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build(name).eval()
    randomise_bn(model, generator)
    size = input_size(name)
    space = slimnas.trace(model, torch.randn(1, 3, size, size))
    assert space.channel_units(), f"{name}: no searchable channel unit"
    supernet = slimnas.Supernet(model, space).eval()
    archs = [space.min_arch(), space.max_arch()]
    archs += [space.sample(generator) for _ in range(RANDOM_ARCHS)]
    for arch in archs:
        for unit in space.channel_units():  # choices honour divisor and group constraints
            width = arch[unit.name]
            assert width == unit.max_channels or width % unit.granularity == 0
        x = torch.randn(1, 3, size, size, generator=generator)
        supernet.activate(arch)
        small = supernet.export(arch).eval()
        with torch.no_grad():
            expected, got = supernet(x), small(x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= 1e-4, (name, dict(arch))
        assert sum(p.numel() for p in small.parameters()) == slimnas.params(space, arch)
        assert hook_macs(small, x) == slimnas.macs(space, arch), (name, dict(arch))


def test_zoo_list_is_the_one_the_issue_counts() -> None:
    assert len(NAMES) >= 80
    assert sum(n not in SLOW for n in NAMES) >= 30
