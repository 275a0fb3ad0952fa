"""The Torch-Pruning baseline: reaches its MACs target, counted by slimnas and by Torch-Pruning."""

from __future__ import annotations

import sys

import pytest
import torch
import torchvision
from torch import nn

import slimnas
from slimnas.errors import PruningError
from slimnas.models import resnet20
from slimnas.pruning.torch_pruning import prune_with_torch_pruning

tp = pytest.importorskip("torch_pruning")


def test_resnet20_to_half_the_macs() -> None:
    torch.manual_seed(0)
    model = resnet20().eval()
    x = torch.randn(2, 3, 32, 32)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    result = prune_with_torch_pruning(model, x, 0.5, iterative_steps=20)
    assert 0.4 < result.ratio <= 0.5
    # The input model is untouched; the pruned copy runs and keeps the classifier whole.
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())
    assert result.model(x).shape == (2, 10)
    assert result.model.fc.out_features == 10
    # slimnas' count of the pruned module is the analytic count of its traced max arch...
    space = slimnas.trace(result.model, x[:1])
    assert slimnas.macs(space, space.max_arch()) == result.macs
    # ...and Torch-Pruning's own count adds BatchNorm, activations and pooling (about 1.5 %).
    base_tp, _ = tp.utils.count_ops_and_params(model, x[:1])
    assert result.macs < result.tp_macs < 1.03 * result.macs
    assert result.base_macs < base_tp < 1.03 * result.base_macs


def test_torchvision_resnet18_per_layer() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    result = prune_with_torch_pruning(model, x, 0.7, global_pruning=False, iterative_steps=10)
    assert result.ratio <= 0.7
    assert result.model(x).shape == (1, 10)
    assert result.macs < result.tp_macs


@pytest.mark.slow
def test_benchmark_steps_reach_the_target_closely() -> None:
    torch.manual_seed(0)
    result = prune_with_torch_pruning(resnet20().eval(), torch.randn(1, 3, 32, 32), 0.3)
    assert 0.29 < result.ratio <= 0.3


def test_a_target_it_cannot_reach_is_one_line() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))  # only the classifier: nothing to prune
    with pytest.raises(PruningError, match="reached only 100.0% of the MACs"):
        prune_with_torch_pruning(model, torch.randn(1, 3, 2, 2), 0.5, iterative_steps=3)


def test_missing_torch_pruning_is_one_line(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch_pruning", None)
    with pytest.raises(slimnas.ConfigError, match=r"pip install 'slimnas\[prune\]'"):
        prune_with_torch_pruning(resnet20(), torch.randn(1, 3, 32, 32), 0.5)


def test_ratio_out_of_range() -> None:
    with pytest.raises(slimnas.ConfigError, match="must be in"):
        prune_with_torch_pruning(resnet20(), torch.randn(1, 3, 32, 32), 1.5)
