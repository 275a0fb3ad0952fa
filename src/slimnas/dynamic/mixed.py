"""Soft mode: a weighted mixture of a few sampled widths (TAS, Dong & Yang 2019, arXiv 1905.09717).

TAS §3.2 (Eq. 4): the output of a layer whose width is searched is the sum, over the sampled
widths, of each width's feature-map fragment aligned to the largest sampled width by channel-wise
interpolation (CWI) and weighted by its renormalised Gumbel-softmax probability. CWI is adaptive
average pooling along the channel axis, so it adds no parameters.

Deviation from the official code, stated: the official code keeps one BatchNorm per width
candidate; slimnas shares one BatchNorm (affine weights and running statistics) across widths,
like slimmable networks, and recalibrates statistics per arch with `recalibrate_bn`. With shared
BatchNorm, normalising each fragment equals slicing the normalised full tensor, so fragments are
cut after the BatchNorm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


def channel_interpolate(x: torch.Tensor, channels: int) -> torch.Tensor:
    """CWI: resize dimension 1 of ``x`` to ``channels`` by adaptive average pooling."""
    if x.shape[1] == channels:
        return x
    n, c = x.shape[:2]
    rest = x.shape[2:]
    flat = x.reshape(n, c, -1).transpose(1, 2)  # (N, positions, C): pool along C
    pooled = F.adaptive_avg_pool1d(flat, channels)
    return pooled.transpose(1, 2).reshape(n, channels, *rest)


@dataclass
class WidthMix:
    """Sampled widths of one channel unit and their mixing weights (a tensor with grad)."""

    widths: tuple[int, ...]
    weights: torch.Tensor

    @property
    def channels(self) -> int:
        return max(self.widths)


def mix_widths(y: torch.Tensor, mix: WidthMix) -> torch.Tensor:
    """Σ_k w_k · CWI(y[:, :C_k], C_max) over the sampled widths (TAS Eq. 4)."""
    cmax = y.shape[1]
    out = None
    for k, width in enumerate(mix.widths):
        part = mix.weights[k] * channel_interpolate(y[:, :width], cmax)
        out = part if out is None else out + part
    return out


@dataclass
class DepthMix:
    """Mixing weights over the depth choices of one stage (TAS §3.3, Eq. 6).

    Every block of the stage up to the largest choice runs; the stage output is Σ_d q_d · h_d,
    where h_d is the output after d blocks. ``acc`` accumulates it during one forward.
    """

    choices: Sequence[int]
    weights: torch.Tensor
    acc: torch.Tensor | None = field(default=None, repr=False)

    def weight_of(self, depth: int) -> torch.Tensor | None:
        if depth in self.choices:
            return self.weights[list(self.choices).index(depth)]
        return None
