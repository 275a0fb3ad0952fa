"""Dynamic BatchNorm: shared affine weights and running statistics, sliced to the input width.

As in slimmable networks, one BatchNorm serves every width by taking its leading channels; the
running statistics are only meaningful for the width they were last collected at, so they are
recalibrated per arch (`slimnas.recalibrate_bn`) before a subnet is evaluated (US-Nets §3.3,
arXiv 1903.05134). A BatchNorm subclass with a channel-wise tail (timm's ``BatchNormAct2d``)
runs its ``drop`` and ``act`` after the sliced normalisation too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimnas.dynamic.mixed import WidthMix, mix_widths
from slimnas.space.rules import is_norm_act


class DynamicBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Mixin body for BatchNorm1d/2d.

    ``slim_index`` selects the active channels of a concatenated layout (``None``: the leading
    ``x.shape[1]``); ``slim_mix`` is set where soft mode mixes the unit.
    """

    slim_index: torch.Tensor | None = None
    slim_mix: WidthMix | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.slim_index is None and x.shape[1] == self.num_features:
            y = super().forward(x)
        else:
            select = self.slim_index if self.slim_index is not None else slice(0, x.shape[1])
            y = self._partial_forward(x, select)
            if is_norm_act(self):  # timm's BatchNormAct2d: its forward's channel-wise tail
                y = self.act(self.drop(y))
        return mix_widths(y, self.slim_mix) if self.slim_mix is not None else y

    def _partial_forward(self, x: torch.Tensor, select: slice | torch.Tensor) -> torch.Tensor:
        # Same arithmetic as _BatchNorm.forward on the selected channels. A slice gives views,
        # whose in-place statistics update writes into the shared buffers; an index gives
        # copies, written back below.
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else factor
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        keep_stats = (not self.training or self.track_running_stats) and (
            self.running_mean is not None
        )
        mean = self.running_mean[select] if keep_stats else None
        var = self.running_var[select] if keep_stats else None
        y = F.batch_norm(
            x,
            mean,
            var,
            self.weight[select] if self.weight is not None else None,
            self.bias[select] if self.bias is not None else None,
            use_batch,
            factor,
            self.eps,
        )
        if keep_stats and self.training and isinstance(select, torch.Tensor):
            with torch.no_grad():
                self.running_mean[select] = mean
                self.running_var[select] = var
        return y


class DynamicBatchNorm2d(DynamicBatchNorm, nn.BatchNorm2d):
    pass


class DynamicBatchNorm1d(DynamicBatchNorm, nn.BatchNorm1d):
    pass
