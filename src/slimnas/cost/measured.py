"""Costs counted on a built module by running it, independent of the space's records: the check
that an exported model costs what the analytic count of its arch says."""

from __future__ import annotations

import math

import torch
from torch import nn


def module_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Conv and linear multiply-accumulates of one forward at batch 1, counted with forward
    hooks on the modules that actually run (the AutoSlim convention: BatchNorm, activations,
    pooling and adds count zero)."""
    total = 0

    def count(module: nn.Module, inputs, output: torch.Tensor) -> None:
        nonlocal total
        positions = output[0].numel() // output.shape[1 if isinstance(module, nn.Conv2d) else -1]
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += positions * module.out_channels * per_output
        else:
            total += positions * module.out_features * module.in_features

    handles = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(example_input[:1])
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.train(mode)
    return total


def module_params(model: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["module_macs", "module_params"]
