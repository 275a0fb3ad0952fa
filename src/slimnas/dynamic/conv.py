"""Dynamic Conv2d: runs any channel choice by slicing the leading filters (weight sharing).

Slimmable networks (Yu et al. 2018, arXiv 1812.08928, §3) share weights by taking the first
``c`` filters and the first ``c_in`` input channels. Depthwise and grouped convs whose input and
output form one unit keep whole groups: ``groups = c_in / group_width``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimnas.dynamic.mixed import WidthMix, mix_widths


class DynamicConv2d(nn.Conv2d):
    """An `nn.Conv2d` whose active output width is set by the supernet.

    The supernet turns a model's convs into this class in place (state dict keys unchanged) and
    sets ``slim_out`` (active output channels, ``None`` = all), ``slim_group_width`` (0 for
    dense convs) and, in soft mode, ``slim_mix``. Input channels follow the input tensor.
    """

    slim_out: int | None = None
    slim_group_width: int = 0
    slim_mix: WidthMix | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin = x.shape[1]
        if self.slim_group_width:
            cout, groups = self.slim_out or cin, cin // self.slim_group_width
            weight = self.weight[:cout]
        else:
            cout, groups = self.slim_out or self.out_channels, self.groups
            weight = self.weight[:cout, : cin // groups]
        bias = self.bias[:cout] if self.bias is not None else None
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        else:
            padding = self.padding
        y = F.conv2d(x, weight, bias, self.stride, padding, self.dilation, groups)
        return mix_widths(y, self.slim_mix) if self.slim_mix is not None else y


class DynamicLinear(nn.Linear):
    """An `nn.Linear` whose active output width is ``slim_out``; inputs follow the tensor."""

    slim_out: int | None = None
    slim_mix: WidthMix | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cout = self.slim_out or self.out_features
        bias = self.bias[:cout] if self.bias is not None else None
        y = F.linear(x, self.weight[:cout, : x.shape[-1]], bias)
        if self.slim_mix is None:
            return y
        return mix_widths(y.movedim(-1, 1), self.slim_mix).movedim(1, -1)
