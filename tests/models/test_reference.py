"""Tests for the reference models in `slimnas.models` (shapes, sizes, MACs, fx tracing)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
import torch.fx
from torch import nn

from slimnas.errors import ConfigError
from slimnas.models import (
    MODELS,
    CifarResNet,
    make_divisible,
    mobilenet_v2,
    mobilenet_v2_cifar,
    resnet20,
    resnet56,
)
from slimnas.models.cifar_resnet import ZeroPadShortcut

# (name, constructor kwargs, input resolution, number of classes)
CASES = [
    ("resnet20", {"shortcut": "A"}, 32, 10),
    ("resnet20", {"shortcut": "B"}, 32, 10),
    ("resnet32", {"shortcut": "A"}, 32, 10),
    ("resnet56", {"shortcut": "B", "num_classes": 100}, 32, 100),
    ("resnet110", {"shortcut": "A"}, 32, 10),
    ("mobilenet_v2", {}, 224, 1000),
    ("mobilenet_v2_cifar", {}, 32, 10),
    ("mobilenet_v2_cifar", {"width_mult": 0.5}, 32, 10),
]
CASE_IDS = [f"{name}-{kwargs}" for name, kwargs, _, _ in CASES]


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fvcore_macs(model: nn.Module, resolution: int) -> int:
    """Conv + fully-connected multiply-accumulates counted by fvcore for one image."""
    fvcore_nn = pytest.importorskip("fvcore.nn")
    x = torch.randn(1, 3, resolution, resolution)
    counter = fvcore_nn.FlopCountAnalysis(model.eval(), x)
    counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = counter.by_operator()
    return sum(by_op.get(key, 0) for key in ("conv", "linear", "addmm"))


def test_models_dict_names_constructors() -> None:
    assert set(MODELS) == {
        "resnet20",
        "resnet32",
        "resnet56",
        "resnet110",
        "mobilenet_v2",
        "mobilenet_v2_cifar",
        "proxyless_imagenet",
        "proxyless_cifar",
        "proxyless_cifar_small",
    }
    assert all(callable(fn) for fn in MODELS.values())


@pytest.mark.parametrize(("name", "kwargs", "resolution", "classes"), CASES, ids=CASE_IDS)
def test_output_shape(name: str, kwargs: dict, resolution: int, classes: int) -> None:
    torch.manual_seed(0)
    model = MODELS[name](**kwargs).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, resolution, resolution))
    assert y.shape == (2, classes)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(("name", "kwargs", "resolution", "classes"), CASES, ids=CASE_IDS)
def test_fx_trace_matches_eager(name: str, kwargs: dict, resolution: int, classes: int) -> None:
    torch.manual_seed(0)
    model = MODELS[name](**kwargs).eval()
    traced = torch.fx.symbolic_trace(model)
    # ImageNet layouts are fully convolutional up to the pool: a smaller input keeps this fast.
    x = torch.randn(2, 3, min(resolution, 64), min(resolution, 64))
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))


def test_fx_sees_residual_adds_on_block_input() -> None:
    model = resnet20(shortcut="A")
    graph = torch.fx.symbolic_trace(model).graph
    adds = [n for n in graph.nodes if n.op == "call_function" and n.target.__name__ == "add"]
    first_convs = [
        n
        for n in graph.nodes
        if n.op == "call_module" and re.fullmatch(r"layer\d\.\d\.conv1", n.target)
    ]
    blocks = [block for layer in (model.layer1, model.layer2, model.layer3) for block in layer]
    assert len(adds) == len(first_convs) == len(blocks) == 9
    # An identity block adds its input node itself (`out + x`), the node its conv1 reads.
    for add, conv1, block in zip(adds, first_convs, blocks):
        assert (add.args[1] is conv1.args[0]) == (block.downsample is None)
    assert sum(block.downsample is None for block in blocks) == 7


@pytest.mark.parametrize(
    ("depth", "params_a", "params_b"),
    [
        # Stem 3*16*9 + BN 32 = 464; FC 64*10 + 10 = 650. Per block: stage 1 4,672;
        # stage 2 18,560 (first 13,952); stage 3 73,984 (first 55,552). Total 97,216 n - 21,926.
        (20, 269_722, 272_474),
        (32, 464_154, 466_906),
        (56, 853_018, 855_770),
        (110, 1_727_962, 1_730_714),
    ],
)
def test_resnet_param_counts(depth: int, params_a: int, params_b: int) -> None:
    assert num_params(CifarResNet(depth, shortcut="A")) == params_a
    # Option B adds two projections: 16*32 + BN 64 = 576 and 32*64 + BN 128 = 2,176.
    assert num_params(CifarResNet(depth, shortcut="B")) == params_b == params_a + 2_752


@pytest.mark.parametrize(
    ("constructor", "shortcut", "macs"),
    [
        # Stem 442,368 + FC 640 + 6n convs of 2,359,296 minus 2 * 1,179,648 for the two strided
        # first convs: 14,155,776 n - 1,916,288. Option B adds 2 * 131,072 for the projections.
        (resnet20, "A", 40_551_040),
        (resnet20, "B", 40_813_184),
        (resnet56, "A", 125_485_696),
        (resnet56, "B", 125_747_840),
    ],
)
def test_resnet_macs_match_paper_anchors(
    constructor: Callable[..., nn.Module], shortcut: str, macs: int
) -> None:
    measured = fvcore_macs(constructor(shortcut=shortcut), 32)
    assert measured == macs
    anchor = {40_551_040: 40.55, 40_813_184: 40.81, 125_485_696: 125.49, 125_747_840: 125.75}[macs]
    assert round(measured / 1e6, 2) == anchor


def test_resnet_module_names_follow_torchvision() -> None:
    model = resnet20(shortcut="B")
    names = dict(model.named_modules())
    for name in ("conv1", "bn1", "layer1.0.conv1", "layer3.2.bn2", "layer2.0.downsample.0", "fc"):
        assert name in names
    assert model.layer1[0].downsample is None
    assert model.layer2[1].downsample is None
    assert isinstance(resnet20(shortcut="A").layer3[0].downsample, ZeroPadShortcut)


def test_zero_pad_shortcut_subsamples_and_pads_symmetrically() -> None:
    x = torch.randn(2, 3, 8, 8)
    y = ZeroPadShortcut(3, 8, stride=2)(x)
    assert y.shape == (2, 8, 4, 4)
    # (8 - 3) // 2 = 2 zero channels in front, the other 3 at the end.
    torch.testing.assert_close(y[:, 2:5], x[:, :, ::2, ::2])
    assert y[:, :2].abs().sum() == 0
    assert y[:, 5:].abs().sum() == 0


def test_mobilenet_v2_matches_torchvision() -> None:
    models = pytest.importorskip("torchvision.models")
    reference = models.mobilenet_v2().eval()
    ours = mobilenet_v2().eval()
    assert num_params(ours) == num_params(reference) == 3_504_872
    # Same layout and names: torchvision's weights load and give torchvision's output.
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_mobilenet_v2_macs() -> None:
    models = pytest.importorskip("torchvision.models")
    macs = fvcore_macs(mobilenet_v2(), 224)
    assert macs == fvcore_macs(models.mobilenet_v2(), 224) == 300_774_272
    assert abs(macs - 300e6) / 300e6 < 0.01


def test_mobilenet_v2_cifar_ends_at_4x4() -> None:
    model = mobilenet_v2_cifar().eval()
    with torch.no_grad():
        feature_map = model.features(torch.randn(1, 3, 32, 32))
    assert feature_map.shape == (1, 1280, 4, 4)
    # The ImageNet model minus its 1000-way classifier plus a 10-way one.
    assert num_params(model) == 3_504_872 - (1280 * 1000 + 1000) + (1280 * 10 + 10)
    assert fvcore_macs(model, 32) == 87_976_448


@pytest.mark.parametrize("name", sorted(MODELS))
def test_half_width_channels_divisible_by_8(name: str) -> None:
    model = MODELS[name](width_mult=0.5)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs
    for conv in convs:
        assert conv.out_channels % 8 == 0
        assert conv.in_channels == 3 or conv.in_channels % 8 == 0
    full = MODELS[name](width_mult=1.0)
    assert num_params(model) < num_params(full)


def test_resnet_half_width_channels() -> None:
    model = resnet20(width_mult=0.5)
    assert [model.layer1[0].conv1.out_channels, model.layer2[0].conv1.out_channels] == [8, 16]
    assert model.fc.in_features == 32


@pytest.mark.parametrize(
    ("v", "expected"),
    [(16, 16), (8.0, 8), (16 * 0.5, 8), (32 * 0.75, 24), (12, 16), (32 * 0.35, 16), (3, 8)],
)
def test_make_divisible(v: float, expected: int) -> None:
    assert make_divisible(v) == expected


def test_make_divisible_never_drops_more_than_10_percent() -> None:
    for tenths in range(10, 2000):
        v = tenths / 10
        rounded = make_divisible(v)
        assert rounded % 8 == 0
        assert rounded >= 0.9 * v


@pytest.mark.parametrize(
    "kwargs", [{"depth": 21}, {"depth": 20, "shortcut": "C"}, {"depth": 20, "width_mult": 0}]
)
def test_cifar_resnet_rejects_bad_config(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        CifarResNet(**kwargs)
