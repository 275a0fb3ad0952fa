"""Peak activation memory at batch 1, from the space's tensor records and liveness.

Model (Joslim's memory-footprint objective, Chin et al. 2020, arXiv 2007.11752, §4): the traced
graph runs in order; a tensor lives from the op that writes it to the last op that reads it;
in-place ops (``ReLU(inplace=True)``, ``+=``) write into their input and add nothing; the peak is
the largest sum of live tensor bytes over the steps. Parameters and workspace are not counted.
Tensors inside a skipped block or an unchosen candidate count zero.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from slimnas.cost.counting import Probs, _Expectation, _runs, _width
from slimnas.space.space import Space
from slimnas.space.units import Choice_


def peak_memory(space: Space, arch: Mapping[str, Choice_], bytes_per_element: int = 4) -> int:
    """Peak bytes of live activations at ``arch`` for one input (float32 by default)."""
    choice = space.resolve(space.validate(arch))
    sizes = [
        t.elements * _width(t.units, choice) * bytes_per_element
        if t.inference and _runs(t.gates, choice)
        else 0
        for t in space.tensors
    ]
    return max((sum(sizes[i] for i in step) for step in space.live), default=0)


def expected_peak_memory(
    space: Space,
    probs: Probs,
    base: Mapping[str, Choice_] | None = None,
    bytes_per_element: int = 4,
) -> torch.Tensor:
    """Max over steps of the expected live bytes (a differentiable upper-level surrogate)."""
    e = _Expectation(space, probs, base)
    sizes = [
        e.gate(t.gates) * e.width(t.units) * (t.elements * bytes_per_element) * t.inference
        for t in space.tensors
    ]
    sizes = [s if isinstance(s, torch.Tensor) else torch.tensor(float(s)) for s in sizes]
    steps = [torch.stack([sizes[i] for i in step]).sum() for step in space.live if step]
    return torch.stack(steps).max()
