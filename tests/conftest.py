"""Shared fixtures."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from slimnas.cost.measured import module_macs

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One pytest-xdist worker per core (`-n 2` on the 2-core CI machine): each worker and the
    # `slimnas` processes its tests start get one thread, so the workers do not oversubscribe.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


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


@pytest.fixture
def hook_macs():
    """Conv + linear MACs counted with forward hooks on the modules that run, independent of
    slimnas' space records."""
    return module_macs
