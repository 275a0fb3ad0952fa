"""Dynamic Conv2d and Linear: run any channel choice by slicing the leading filters.

Slimmable networks (Yu et al. 2018, arXiv 1812.08928, §3) share weights by taking the first
``c`` filters and the first ``c_in`` input channels. Where the input is a concatenation of several
units (DenseNet, Inception), the active input channels are the leading ones of each segment, given
as an index. Depthwise and grouped convs whose input and output form one layout keep whole groups:
``groups = c_in / group_width``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimnas.dynamic.mixed import WidthMix, mix_widths


def _active_weight(module: nn.Module, rows: int, cols: int) -> torch.Tensor:
    """The leading ``rows`` × ``cols`` block of ``module.weight``.

    At full width the weight itself (no slicing in the autograd graph). Without grad (search,
    evaluation) one contiguous copy per width is reused until the weight changes in place
    (``_version`` counts optimizer steps and ``load_state_dict``), so small-batch evaluation
    does not pay for a strided weight on every call.
    """
    weight = module.weight
    if cols == weight.shape[1]:
        return weight if rows == weight.shape[0] else weight[:rows]
    if torch.is_grad_enabled():
        return weight[:rows, :cols]
    key = (rows, cols, weight._version, weight.data_ptr())
    if getattr(module, "slim_weight_key", None) != key:
        module.slim_weight_cache = weight.detach()[:rows, :cols].contiguous()
        module.slim_weight_key = key
    return module.slim_weight_cache


def _rows(tensor: torch.Tensor | None, count: int | None, index: torch.Tensor | None):
    """The active output rows of a weight or bias: an index, or the leading ``count``."""
    if tensor is None:
        return None
    if index is not None:
        return tensor.index_select(0, index)
    return tensor[:count] if count is not None else tensor


class DynamicConv2d(nn.Conv2d):
    """An `nn.Conv2d` whose active channels are set by the supernet.

    The supernet turns a model's convs into this class in place (state dict keys unchanged) and
    sets ``slim_out`` (active output channels; ``None`` = all), ``slim_out_index`` /
    ``slim_in_index`` (active channels of a concatenated layout; ``None`` = leading ones),
    ``slim_group_width`` (0 for dense convs) and, in soft mode, ``slim_mix``.
    """

    slim_out: int | None = None
    slim_group_width: int = 0
    slim_in_index: torch.Tensor | None = None
    slim_out_index: torch.Tensor | None = None
    slim_mix: WidthMix | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin = x.shape[1]
        bias = _rows(self.bias, self.slim_out, self.slim_out_index)
        if self.slim_group_width:
            groups = cin // self.slim_group_width
        else:
            groups = self.groups
        if self.slim_out_index is not None or self.slim_in_index is not None:
            weight = _rows(self.weight, self.slim_out, self.slim_out_index)
            if self.slim_in_index is not None and not self.slim_group_width:
                weight = weight.index_select(1, self.slim_in_index)
        else:
            cols = self.weight.shape[1] if self.slim_group_width else cin // groups
            weight = _active_weight(self, self.slim_out or self.out_channels, cols)
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        else:
            padding = self.padding
        y = F.conv2d(x, weight, bias, self.stride, padding, self.dilation, groups)
        return mix_widths(y, self.slim_mix) if self.slim_mix is not None else y


class DynamicLinear(nn.Linear):
    """An `nn.Linear` with active output width ``slim_out``; inputs follow the tensor (or
    ``slim_in_index`` for a concatenated layout)."""

    slim_out: int | None = None
    slim_in_index: torch.Tensor | None = None
    slim_out_index: torch.Tensor | None = None
    slim_mix: WidthMix | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = _rows(self.bias, self.slim_out, self.slim_out_index)
        if self.slim_out_index is not None or self.slim_in_index is not None:
            weight = _rows(self.weight, self.slim_out, self.slim_out_index)
            if self.slim_in_index is not None:
                weight = weight.index_select(1, self.slim_in_index)
        else:
            weight = _active_weight(self, self.slim_out or self.out_features, x.shape[-1])
        y = F.linear(x, weight, bias)
        if self.slim_mix is None:
            return y
        return mix_widths(y.movedim(-1, 1), self.slim_mix).movedim(1, -1)
