"""Tests for `Supernet` (supernet.py): activate, export, save/load, and `recalibrate_bn`."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import slimnas
from slimnas.io import atomic_write_bytes
from slimnas.models import mobilenet_v2_cifar, resnet20, resnet56

SHAPE = (2, 3, 16, 16)


def randomise_bn(model: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and affine weights, so that slicing mistakes show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(c, generator=generator) * 0.1)


def build_supernet(build=resnet20, seed: int = 0) -> slimnas.Supernet:
    torch.manual_seed(seed)
    model = build()
    randomise_bn(model, seed)
    space = slimnas.trace(model, torch.randn(1, 3, 16, 16))
    return slimnas.Supernet(model, space)


def norms(module: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    return [
        (n, m) for n, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]


# ---------------------------------------------------------------------------- save / load
def test_save_then_load_restores_weights_and_arch(tmp_path: Path) -> None:
    supernet = build_supernet(seed=0).eval()
    arch = supernet.space.sample(torch.Generator().manual_seed(0))
    assert arch != supernet.space.max_arch()
    supernet.activate(arch)
    supernet.save(tmp_path)

    torch.manual_seed(1)
    fresh = resnet20()
    loaded = slimnas.Supernet.load(fresh, tmp_path).eval()
    assert loaded.arch == arch
    assert loaded.space.to_json() == supernet.space.to_json()
    x = torch.randn(SHAPE)
    with torch.no_grad():
        assert torch.equal(loaded(x), supernet(x))
        loaded.activate(supernet.space.max_arch())
        supernet.activate(supernet.space.max_arch())
        assert torch.equal(loaded(x), supernet(x))
    for (name, a), (_, b) in zip(
        supernet.model.state_dict().items(), loaded.model.state_dict().items()
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    ("saved", "other"),
    [
        (resnet20, lambda: resnet20(width_mult=0.5)),
        (resnet20, lambda: resnet20(num_classes=100)),
        (resnet20, resnet56),
        (resnet56, resnet20),
    ],
    ids=["narrower", "more-classes", "deeper", "shallower"],
)
def test_load_into_a_different_model_raises(tmp_path: Path, saved, other) -> None:
    supernet = build_supernet(saved)
    supernet.save(tmp_path)
    with pytest.raises(slimnas.CheckpointError) as info:
        slimnas.Supernet.load(other(), tmp_path)
    assert "\n" not in str(info.value)


def test_truncated_weights_raise_checkpoint_error_naming_the_file(tmp_path: Path) -> None:
    build_supernet().save(tmp_path)
    weights = tmp_path / "supernet.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(slimnas.CheckpointError, match="supernet.safetensors") as info:
        slimnas.Supernet.load(resnet20(), tmp_path)
    assert str(weights) in str(info.value)
    weights.write_bytes(data[:5])
    with pytest.raises(slimnas.CheckpointError, match="supernet.safetensors"):
        slimnas.Supernet.load(resnet20(), tmp_path)


def test_missing_or_broken_metadata_raises_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(slimnas.CheckpointError, match="supernet.json"):
        slimnas.Supernet.load(resnet20(), tmp_path)
    build_supernet().save(tmp_path)
    meta = tmp_path / "supernet.json"
    meta.write_text(meta.read_text()[:100])
    with pytest.raises(slimnas.CheckpointError, match="supernet.json"):
        slimnas.Supernet.load(resnet20(), tmp_path)


def test_save_is_atomic(tmp_path: Path) -> None:
    supernet = build_supernet()
    supernet.save(tmp_path)
    supernet.activate(supernet.space.min_arch())
    supernet.save(tmp_path)  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["supernet.json", "supernet.safetensors"]
    # A write that fails half way leaves the old file whole and no temp file behind.
    weights = tmp_path / "supernet.safetensors"
    before = weights.read_bytes()
    with pytest.raises(TypeError):
        atomic_write_bytes(weights, "not bytes")  # type: ignore[arg-type]
    assert weights.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["supernet.json", "supernet.safetensors"]
    loaded = slimnas.Supernet.load(resnet20(), tmp_path)
    assert loaded.arch == supernet.space.min_arch()


# ----------------------------------------------------------------------------- recalibrate_bn
def recalibration_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(5)
    return [
        (torch.randn(4, 3, 16, 16, generator=generator) * 2 + 0.5, torch.zeros(4)) for _ in range(3)
    ]


@pytest.mark.parametrize("training", [True, False])
def test_recalibrate_bn_measures_the_subnet(training: bool) -> None:
    supernet = build_supernet()
    space = supernet.space
    arch = space.uniform_arch(0.5)
    assert arch["conv1"] == 8
    supernet.train(training)
    supernet.model.layer2.train(not training)  # a mixed state must come back as it was
    modes = {name: m.training for name, m in supernet.named_modules()}
    for i, (_, bn) in enumerate(norms(supernet)):
        bn.momentum = 0.05 * (i % 3 + 1)
    momenta = {name: bn.momentum for name, bn in norms(supernet)}
    weights = {k: v.clone() for k, v in supernet.state_dict().items() if "running" not in k}
    batches = recalibration_batches()

    assert slimnas.recalibrate_bn(supernet, arch, batches) == 3

    assert supernet.arch == arch
    assert {name: m.training for name, m in supernet.named_modules()} == modes
    assert {name: bn.momentum for name, bn in norms(supernet)} == momenta
    for key, value in supernet.state_dict().items():
        if key in weights and "num_batches" not in key:
            assert torch.equal(value, weights[key]), key
    # The first BN: cumulative average of the per-batch statistics of the active conv1 output.
    conv_weight = supernet.model.conv1.weight[:8]
    means, variances = [], []
    for x, _ in batches:
        y = F.conv2d(x, conv_weight, padding=1)
        means.append(y.mean((0, 2, 3)))
        variances.append(y.var((0, 2, 3), unbiased=True))
    bn1 = supernet.model.bn1
    torch.testing.assert_close(bn1.running_mean[:8], torch.stack(means).mean(0))
    torch.testing.assert_close(bn1.running_var[:8], torch.stack(variances).mean(0))
    assert int(bn1.num_batches_tracked) == 3
    # Channels outside the subnet were reset, not left at their old values.
    assert torch.equal(bn1.running_mean[8:], torch.zeros(8))
    assert torch.equal(bn1.running_var[8:], torch.ones(8))


def test_recalibrate_bn_matches_the_exported_subnet() -> None:
    """Every BN of the supernet gets the statistics the exported subnet itself would measure."""
    supernet = build_supernet()
    space = supernet.space
    arch = space.sample(torch.Generator().manual_seed(2)).merged({"layer2": 2})
    batches = [x for x, _ in recalibration_batches()]  # bare tensors work too
    small = supernet.export(arch)
    slimnas.recalibrate_bn(supernet, arch, batches)

    small.eval()
    for _, bn in norms(small):
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    with torch.no_grad():
        for x in batches:
            small(x)
    recalibrated = dict(norms(supernet.export(arch)))
    measured = dict(norms(small))
    assert recalibrated.keys() == measured.keys()
    assert "layer2.2.bn1" not in measured  # a skipped block has nothing to measure
    skipped = [
        block
        for unit in space.depth_units()
        for i, block in enumerate(unit.blocks)
        if arch[unit.name] <= unit.base + i
    ]
    assert "layer2.2" in skipped
    assert len(measured) == len(norms(supernet)) - 2 * len(skipped)  # two BNs per basic block
    for name, want in measured.items():
        got = recalibrated[name]
        torch.testing.assert_close(got.running_mean, want.running_mean, msg=name)
        torch.testing.assert_close(got.running_var, want.running_var, msg=name)


# ------------------------------------------------------------------------------- activate
@pytest.mark.parametrize("build", [resnet20, mobilenet_v2_cifar])
def test_max_arch_is_exactly_the_original_model(build) -> None:
    torch.manual_seed(0)
    model = build()
    randomise_bn(model, 0)
    original = copy.deepcopy(model)
    space = slimnas.trace(model, torch.randn(1, 3, 16, 16))
    supernet = slimnas.Supernet(model, space)
    supernet.activate(space.min_arch())
    supernet.activate(space.max_arch())
    x = torch.randn(SHAPE)
    supernet.eval()
    original.eval()
    with torch.no_grad():
        assert torch.equal(supernet(x), original(x))
    # Training mode too (batch statistics, running-stat updates, no dropout in the way).
    supernet.train()
    original.train()
    for m in list(supernet.modules()) + list(original.modules()):
        if isinstance(m, nn.Dropout):
            m.eval()
    with torch.no_grad():
        assert torch.equal(supernet(x), original(x))
    for name, value in original.state_dict().items():
        assert torch.equal(supernet.model.state_dict()[name], value), name


def test_exported_model_is_independent_of_the_supernet() -> None:
    supernet = build_supernet().eval()
    space = supernet.space
    arch = space.sample(torch.Generator().manual_seed(4))
    small = supernet.export(arch).eval()
    x = torch.randn(SHAPE)
    with torch.no_grad():
        before = small(x)
        supernet.activate(arch)
        torch.testing.assert_close(supernet(x), before, rtol=0, atol=1e-5)
        supernet_storage = {p.data_ptr() for p in supernet.state_dict().values()}
        for value in small.state_dict().values():
            assert value.data_ptr() not in supernet_storage
        for value in supernet.model.state_dict().values():
            if value.is_floating_point():
                value.mul_(0.5).add_(1.0)
        assert not torch.allclose(supernet(x), before)
        assert torch.equal(small(x), before)
    # And the supernet still runs every arch after exporting.
    supernet.activate(space.max_arch())
    assert supernet(x).shape == before.shape


def test_activate_unknown_unit_raises() -> None:
    supernet = build_supernet()
    arch = supernet.space.max_arch().merged({"layer7.conv": 8})
    with pytest.raises(slimnas.ArchError, match=r"'layer7\.conv'"):
        supernet.activate(arch)
    with pytest.raises(slimnas.ArchError, match=r"'layer3\.0\.conv1'"):
        supernet.activate(supernet.space.max_arch().merged({"layer3.0.conv1": 63}))
    assert supernet.arch == supernet.space.max_arch()  # the failed calls changed nothing
