"""Tests for train/native_init.py: the model's own init rules replayed at a found arch's widths."""

from __future__ import annotations

import math

import torch
from torch import nn

import slimnas
from slimnas.train.native_init import apply_native_init, record_init


def small_resnet(seed: int = 0):
    torch.manual_seed(seed)
    model, record = record_init(lambda: slimnas.models.resnet20())
    space = slimnas.trace(model, torch.randn(1, 3, 32, 32))
    return slimnas.Supernet(model, space).export(space.min_arch()), record


def test_record_restores_torch_init_and_sees_the_models_own_rules():
    original = nn.init.kaiming_normal_
    _, record = record_init(lambda: slimnas.models.resnet20())
    assert nn.init.kaiming_normal_ is original
    fn, _, kwargs, shape = record.calls["layer3.0.conv1.weight"]
    assert (fn, kwargs["mode"], shape) == ("kaiming_normal_", "fan_out", (64, 32, 3, 3))
    assert record.calls["fc.weight"][0] == "kaiming_uniform_"  # nn.Linear's own default


def test_sliced_weights_get_the_variance_of_their_own_fan():
    small, record = small_resnet()
    conv = small.layer3[0].conv1  # cut from 64 to 16 outputs: fan-out 144, not 576
    target = math.sqrt(2 / (conv.out_channels * 9))
    assert conv.weight.std().item() < 0.7 * target  # sliced: drawn for the full width
    apply_native_init(small, record, seed=0)
    assert abs(conv.weight.std().item() / target - 1) < 0.1
    bound = 1 / math.sqrt(small.fc.in_features)  # the default bias rule, at the new fan-in
    assert small.fc.bias.abs().max().item() <= bound
    assert small.fc.bias.abs().max().item() > 0.5 * bound
    assert torch.all(small.layer1[0].bn1.weight == 1)


def test_native_init_is_reproducible_and_leaves_the_global_generator():
    a, record = small_resnet()
    b, _ = small_resnet()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    apply_native_init(a, record, seed=5)
    torch.testing.assert_close(torch.rand(3), expected_next)
    apply_native_init(b, record, seed=5)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, msg=name)


def test_unrecorded_parameters_are_kept():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.full((4,), 3.0))
            self.fc = nn.Linear(4, 2)

    net, record = record_init(Net)
    assert "scale" not in record.calls
    redrawn = apply_native_init(net, record)
    assert "scale" not in redrawn and set(redrawn) == {"fc.weight", "fc.bias"}
    assert torch.all(net.scale == 3.0)
