"""Skippable residual blocks: the runtime side of a `DepthUnit`.

A block computing ``x + f(x)`` with an identity shortcut returns ``x`` when its depth unit skips
it (hard mode). In soft mode (TAS §3.3, arXiv 1905.09717) every block of the stage up to the
largest depth choice runs, and the stage returns Σ_d q_d · h_d, h_d being the output after d
blocks; all blocks of a stage share one channel unit, so no alignment between depths is needed.
"""

from __future__ import annotations

import torch
from torch import nn

from slimnas.dynamic.mixed import DepthMix


class SkippableBlock(nn.Module):
    """Mixin placed before a block's own class (see `convert_class`): its forward still runs."""

    slim_runs: bool = True
    slim_index: int = 0  # this block runs iff depth > slim_index (base + position in stage)
    slim_first: bool = False  # first skippable block of its stage
    slim_depth_mix: DepthMix | None = None

    def forward(self, x: torch.Tensor, *args, **kwargs):
        mix = self.slim_depth_mix
        if mix is None:
            return super().forward(x, *args, **kwargs) if self.slim_runs else x
        deepest = max(mix.choices)
        if self.slim_index >= deepest:
            return x  # beyond the deepest choice: the accumulated mixture passes through
        if self.slim_first:
            weight = mix.weight_of(self.slim_index)
            mix.acc = weight * x if weight is not None else None
        h = super().forward(x, *args, **kwargs)
        weight = mix.weight_of(self.slim_index + 1)
        if weight is not None:
            mix.acc = weight * h if mix.acc is None else mix.acc + weight * h
        if self.slim_index + 1 == deepest:
            out, mix.acc = mix.acc, None
            return out
        return h


_CLASSES: dict[tuple[type, type], type] = {}


def convert_class(module: nn.Module, mixin: type) -> None:
    """Make ``module`` an instance of ``mixin`` + its own class, in place (state dict unchanged).

    The original class is kept in ``module.slim_base_class`` so that export can restore it.
    """
    cls = type(module)
    if isinstance(module, mixin):
        return
    key = (mixin, cls)
    if key not in _CLASSES:
        if issubclass(mixin, cls):  # e.g. DynamicConv2d already subclasses nn.Conv2d
            _CLASSES[key] = mixin
        else:
            _CLASSES[key] = type(f"{mixin.__name__}_{cls.__name__}", (mixin, cls), {})
    module.slim_base_class = cls
    module.__class__ = _CLASSES[key]


def restore_class(module: nn.Module) -> None:
    """Undo `convert_class` and drop every ``slim_*`` attribute."""
    base = module.__dict__.pop("slim_base_class", None)
    if base is not None:
        module.__class__ = base
    for name in [n for n in module.__dict__ if n.startswith("slim_")]:
        del module.__dict__[name]
