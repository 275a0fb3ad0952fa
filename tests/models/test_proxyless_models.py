"""Tests for `slimnas.models.proxyless`: the ProxylessNAS MBConv search space."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import slimnas
from slimnas.cost.measured import module_macs, module_params
from slimnas.models import (
    MODELS,
    MBConv,
    ProxylessBlock,
    ProxylessNet,
    proxyless_cifar,
    proxyless_cifar_small,
    proxyless_imagenet,
)
from slimnas.models.build import build_model
from slimnas.models.proxyless import CIFAR_STRIDES

MBCONVS = ("k7e6", "k7e3", "k5e6", "k5e3", "k3e6", "k3e3")
CIFAR = (1, 3, 32, 32)


def small_space(width_mult: float = 0.5) -> tuple[nn.Module, slimnas.Space]:
    torch.manual_seed(0)
    model = proxyless_cifar_small(width_mult).eval()
    return model, slimnas.trace(model, torch.randn(CIFAR))


def test_registered_with_default_input_shapes() -> None:
    assert MODELS["proxyless_cifar_small"] is proxyless_cifar_small
    assert MODELS["proxyless_cifar"] is proxyless_cifar
    _, shape = build_model("proxyless_imagenet", width_mult=0.25)
    assert shape == (1, 3, 224, 224)
    model, shape = build_model("proxyless_cifar", width_mult=0.25)
    assert shape == CIFAR and isinstance(model, ProxylessNet)


def test_mbconv_layers_and_output_shape() -> None:
    block = MBConv(16, 24, kernel_size=5, stride=2, expand_ratio=3)
    depthwise = block.depth_conv[0]
    assert block.inverted_bottleneck[0].out_channels == 48
    assert (depthwise.kernel_size, depthwise.stride, depthwise.groups) == ((5, 5), (2, 2), 48)
    assert len(block.point_linear) == 2  # linear projection: conv + BN, no activation
    assert block(torch.randn(2, 16, 8, 8)).shape == (2, 24, 4, 4)
    assert MBConv(16, 16, 3, 1, 1).inverted_bottleneck is None


def test_block_candidates_largest_first_and_zero_only_on_identity_shortcut() -> None:
    assert tuple(ProxylessBlock(16, 16, 1).op) == (*MBCONVS, "zero")
    assert tuple(ProxylessBlock(16, 24, 1).op) == MBCONVS
    assert tuple(ProxylessBlock(16, 16, 2).op) == MBCONVS
    custom = ProxylessBlock(16, 16, 1, kernels=(3, 5), expansions=(6,), zero=False)
    assert tuple(custom.op) == ("k5e6", "k3e6")


def test_block_adds_shortcut_and_zero_choice_is_identity() -> None:
    torch.manual_seed(0)
    block = ProxylessBlock(8, 8, 1).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        block.op.activate("k3e3")
        torch.testing.assert_close(block(x), x + block.op["k3e3"](x))
        block.op.activate("zero")
        torch.testing.assert_close(block(x), x)


def test_trace_finds_one_op_unit_per_searched_block() -> None:
    _, space = small_space()
    ops = space.op_units()
    assert len(ops) == sum((2, 2, 2, 2, 2, 1))
    assert [u.name for u in ops[:3]] == ["stages.0.0.op", "stages.0.1.op", "stages.1.0.op"]
    # Zero exactly on the identity-shortcut blocks: every block of a stage but its first.
    assert [u.name for u in ops if "zero" in u.choices] == [f"stages.{s}.1.op" for s in range(5)]
    assert all(u.default == "k7e6" for u in ops)
    assert set(space.max_arch()[u.name] for u in ops) == {"k7e6"}
    # Inside the candidates: one unit per expansion conv; a stage's head block also owns the
    # stage's output channels, shared by its six projections and the identity blocks after it.
    names = {u.name for u in space.channel_units()}
    assert {f"stages.0.1.op.{c}.inverted_bottleneck.0" for c in MBCONVS} <= names
    assert "stages.0.0.op.k7e6.point_linear.0" in names
    assert not any(n.startswith("stages.0.1.op.") and "point_linear" in n for n in names)


def test_imagenet_space_has_21_op_units_15_with_zero() -> None:
    torch.manual_seed(0)
    model = proxyless_imagenet().eval()
    space = slimnas.trace(model, torch.randn(1, 3, 224, 224))
    ops = space.op_units()
    assert len(ops) == 21
    assert sum("zero" in u.choices for u in ops) == 15


def test_depth_units_found_and_equal_to_zero_choices() -> None:
    """Tracing also sees each stage's identity-shortcut blocks as a `DepthUnit`; skipping them
    by depth must cost and compute exactly what choosing zero on them does."""
    model, space = small_space()
    assert [(u.name, u.choices) for u in space.depth_units()] == [
        (f"stages.{s}", (1, 2)) for s in range(5)
    ]
    supernet = slimnas.Supernet(model, space).eval()
    by_depth = space.max_arch().merged({"stages.2": 1})
    by_zero = space.max_arch().merged({"stages.2.1.op": "zero"})
    assert slimnas.macs(space, by_depth) == slimnas.macs(space, by_zero)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        supernet.activate(by_depth)
        expected = supernet(x)
        supernet.activate(by_zero)
        torch.testing.assert_close(supernet(x), expected)


def test_cifar_layout_ends_at_4x4_and_small_head_is_640() -> None:
    model = proxyless_cifar_small(0.25).eval()
    seen = {}
    model.feature_mix.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert seen["shape"] == (2, 640, 4, 4)
    assert [len(stage) for stage in model.stages] == [2, 2, 2, 2, 2, 1]
    full = proxyless_cifar()
    assert full.last_channel == 1280 and [len(s) for s in full.stages] == [4, 4, 4, 4, 4, 1]
    assert proxyless_cifar(1.5).last_channel == 1920


def test_he_fout_initialisation() -> None:
    torch.manual_seed(0)
    model = proxyless_cifar()
    conv = model.stages[4][1].op["k7e6"].depth_conv[0]  # 1152 channels, 7x7 depthwise
    assert conv.weight.std().item() == pytest.approx((2 / (49 * 1152)) ** 0.5, rel=0.02)
    bn = model.stages[4][1].op["k7e6"].depth_conv[1]
    assert bool((bn.weight == 1).all()) and bool((bn.bias == 0).all())
    linear = model.classifier[1]
    assert linear.weight.abs().max().item() <= 1280**-0.5 and bool((linear.bias == 0).all())


def test_export_equals_supernet_on_random_archs(randomise_bn) -> None:
    model, space = small_space()
    generator = torch.Generator().manual_seed(0)
    randomise_bn(model, generator)
    supernet = slimnas.Supernet(model, space).eval()
    archs = [space.sample(generator) for _ in range(3)]
    assert len(set(archs)) == 3
    for arch in archs:
        x = torch.randn(2, 3, 32, 32, generator=generator)
        supernet.activate(arch)
        small = supernet.export(arch).eval()
        assert not any(isinstance(m, slimnas.Choice) for m in small.modules())
        with torch.no_grad():
            torch.testing.assert_close(small(x), supernet(x), atol=1e-5, rtol=0)
        assert module_params(small) == slimnas.params(space, arch)
        assert module_macs(small, x) == slimnas.macs(space, arch)


def test_zero_choice_exports_an_identity_block_and_drops_its_macs(randomise_bn) -> None:
    model, space = small_space()
    randomise_bn(model, torch.Generator().manual_seed(1))
    supernet = slimnas.Supernet(model, space).eval()
    full = space.max_arch()
    skipped = full.merged({"stages.1.1.op": "zero"})
    small = supernet.export(skipped).eval()
    block = small.stages[1][1]
    assert isinstance(block.op, slimnas.Zero)
    seen = {}
    block.register_forward_hook(lambda m, i, o: seen.update(x=i[0], out=o))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        supernet.activate(skipped)
        torch.testing.assert_close(small(x), supernet(x), atol=1e-5, rtol=0)
    assert torch.equal(seen["out"], seen["x"])
    # The saving is the MACs of the k7e6 candidate on that block's input (24 channels, 16x16).
    assert seen["x"].shape[1:] == (24, 16, 16)
    dropped = module_macs(model.stages[1][1].op["k7e6"], seen["x"])
    assert slimnas.macs(space, full) - slimnas.macs(space, skipped) == dropped > 0
    assert module_macs(small, x) == slimnas.macs(space, skipped)


def test_imagenet_costs_at_all_k3e6_match_a_plain_k3e6_net() -> None:
    torch.manual_seed(0)
    model = proxyless_imagenet().eval()
    x = torch.randn(1, 3, 224, 224)
    space = slimnas.trace(model, x)
    arch = space.max_arch().merged({u.name: "k3e6" for u in space.op_units()})
    small = slimnas.Supernet(model, space).export(arch)
    # Built independently of the space: every block a single k3e6 candidate.
    plain = ProxylessNet(kernels=(3,), expansions=(6,), zero=False)
    assert module_params(small) == module_params(plain) == slimnas.params(space, arch)
    assert module_macs(small, x) == module_macs(plain, x) == slimnas.macs(space, arch)
    assert slimnas.macs(space, arch) < slimnas.macs(space, space.max_arch())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernels": (4,)},
        {"kernels": (3, 3)},
        {"kernels": ()},
        {"expansions": (0,)},
        {"expansions": (2.5,)},
        {"blocks": (4, 4, 4)},
        {"strides": (3, 2, 2, 1, 2, 1)},
        {"width_mult": 0.0},
        {"dropout": 1.0},
    ],
)
def test_bad_config_raises_config_error(kwargs: dict) -> None:
    with pytest.raises(slimnas.ConfigError):
        ProxylessNet(**{"strides": CIFAR_STRIDES, **kwargs})
    if "kernels" in kwargs or "expansions" in kwargs:
        with pytest.raises(slimnas.ConfigError):
            ProxylessBlock(8, 8, 1, **kwargs)


def test_mbconv_inherit_from_keeps_the_larger_ones_function_on_its_slice() -> None:
    """A k3e3 child of a k7e6 source whose outer kernel ring is zero and whose least important
    hidden channels feed nothing computes exactly the source's function (eval mode: the
    BatchNorm statistics follow their channels)."""
    torch.manual_seed(0)
    source = MBConv(8, 12, kernel_size=7, stride=2, expand_ratio=6)
    for bn in (m for m in source.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        ring = torch.ones(7, 7, dtype=torch.bool)
        ring[2:5, 2:5] = False
        source.depth_conv[0].weight[:, :, ring] = 0.0
        dropped = torch.randperm(48)[:24]  # 24 of the 48 hidden channels feed the projection 0
        source.point_linear[0].weight[:, dropped] = 0.0
    child = MBConv(8, 12, kernel_size=3, stride=2, expand_ratio=3)
    child.inherit_from(source)
    x = torch.randn(2, 8, 9, 9)
    assert torch.allclose(child.eval()(x), source.eval()(x), atol=1e-5)
    same = MBConv(8, 12, kernel_size=7, stride=2, expand_ratio=6)  # nothing to drop: a copy
    same.inherit_from(source)
    assert all(
        torch.equal(a, b) for a, b in zip(same.state_dict().values(), source.state_dict().values())
    )
    with pytest.raises(slimnas.ConfigError, match="inherits only from a larger one"):
        source.inherit_from(child)
    with pytest.raises(slimnas.ConfigError, match="inherits only from a larger one"):
        MBConv(8, 12, 3, 1, 3).inherit_from(source)  # another stride
