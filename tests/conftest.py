"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def _randomise_bn(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BatchNorm statistics and affine weights, so that slicing mistakes show."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=generator) * 0.1)


@pytest.fixture
def randomise_bn():
    return _randomise_bn


def _hook_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Conv + linear multiply-accumulates of one forward at batch 1, counted from the modules
    that actually run (forward hooks): independent of slimnas' space records."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        positions = output[0].numel() // output.shape[1 if isinstance(module, nn.Conv2d) else -1]
        if isinstance(module, nn.Conv2d):
            per_output = (
                module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            )
            total += positions * module.out_channels * per_output
        else:
            total += positions * module.out_features * module.in_features

    handles = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    return total


@pytest.fixture
def hook_macs():
    return _hook_macs
