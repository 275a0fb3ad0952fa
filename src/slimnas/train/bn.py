"""BatchNorm recalibration per arch (US-Nets §3.3, Yu & Huang 2019, arXiv 1903.05134).

Shared BatchNorm running statistics belong to no single width; before a subnet is scored or
exported, its statistics are re-estimated as the plain average over a few training batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from slimnas.data.iterable import model_device, to_device
from slimnas.space.units import Choice_


@torch.no_grad()
def recalibrate_bn(supernet, arch: Mapping[str, Choice_], batches: Iterable) -> int:
    """Activate ``arch`` and re-estimate every BatchNorm's running statistics on ``batches``.

    Batches are tensors or (input, target) pairs from any iterable (a list, a `BatchLoader`, a
    ``torch.utils.data.DataLoader``), moved to the supernet's device when elsewhere. Weights are
    not changed; each module's training flag is restored afterwards. Returns the number of
    batches used. Changes the supernet's state (active arch and BatchNorm buffers).
    """
    device = model_device(supernet)
    supernet.activate(arch)
    norms = [m for m in supernet.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = {m: m.training for m in supernet.modules()}
    momenta = {m: m.momentum for m in norms}
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: every batch weighs the same
    supernet.eval()
    for norm in norms:
        norm.train()
    count = 0
    try:
        for batch in batches:
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
            supernet(to_device(inputs, device))
            count += 1
    finally:
        for norm, momentum in momenta.items():
            norm.momentum = momentum
        for module, mode in modes.items():
            module.train(mode)
    return count


@contextmanager
def buffers_kept(module: nn.Module) -> Iterator[None]:
    """Inside the block, BatchNorm recalibrations (any buffer change) are undone at its end:
    the module leaves with the buffers it came with."""
    saved = {n: b.clone() for n, b in module.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for n, b in module.named_buffers():
                b.copy_(saved[n])
