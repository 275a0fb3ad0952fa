"""Custom tracing rules: a user teaches the tracer about their own op."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import slimnas


class GuardedSwish(nn.Module):
    """An activation with data-dependent control flow: torch.fx cannot trace into it."""

    def forward(self, x):
        if x.abs().max() > 1e6:
            return x
        return x * torch.sigmoid(x)


def soft_clip(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x / 3) * 3


fx.wrap("soft_clip")  # an opaque function call in the graph, as user ops often are


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.act1 = GuardedSwish()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        x = soft_clip(self.bn2(self.conv2(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.fixture
def rules():
    registered = []

    def register(op, behaviour):
        slimnas.register_rule(op, behaviour)
        registered.append(op)

    yield register
    for op in registered:
        slimnas.unregister_rule(op)


X = torch.randn(1, 3, 8, 8)


def test_untraceable_module_names_module_line_and_rule_api() -> None:
    with pytest.raises(slimnas.TraceError) as info:
        slimnas.trace(Net(), X)
    message = str(info.value)
    assert "'act1'" in message and "x.abs().max() > 1e6" in message
    assert "register_rule" in message and len(message.splitlines()) == 1


def test_pass_rule_keeps_units_searchable_and_export_exact(rules) -> None:
    rules(GuardedSwish, "pass")
    rules(soft_clip, "pass")
    model = Net().eval()
    space = slimnas.trace(model, X)
    assert {u.name for u in space.channel_units()} == {"conv1", "conv2"}
    supernet = slimnas.Supernet(model, space).eval()
    arch = space.min_arch()
    small = supernet.export(arch).eval()
    supernet.activate(arch)
    with torch.no_grad():
        assert torch.allclose(small(X), supernet(X), atol=1e-6)
    assert isinstance(small.act1, GuardedSwish)
    assert small.conv2.in_channels == arch["conv1"] < 16


def test_without_a_function_rule_its_channels_are_fixed(rules) -> None:
    rules(GuardedSwish, "pass")
    space = slimnas.trace(Net(), X)
    unit = space.units["conv2"]
    assert not unit.searchable and "soft_clip" in unit.fixed_reason
    assert space.units["conv1"].searchable


def test_opaque_rule_fixes_the_channels_around_the_op(rules) -> None:
    rules(GuardedSwish, "opaque")
    rules(soft_clip, "pass")
    space = slimnas.trace(Net(), X)
    assert not space.units["conv1"].searchable
    assert space.units["conv2"].searchable


def test_unknown_behaviour_is_refused() -> None:
    with pytest.raises(slimnas.TraceError, match="magic"):
        slimnas.register_rule(GuardedSwish, "magic")
