"""Channels-last memory format (NHWC) for training: the model's 4-D weights and each batch's
images are laid out with the channels innermost, which cuDNN's fastest convolution kernels
(tensor cores, above all under mixed precision) read without a transpose; see PyTorch's
"Channels Last Memory Format" tutorial. The values are the same; only the strides change, so a
run with it computes what a run without it computes, up to the order of floating-point sums.

    to_channels_last(model)                 # in place: 4-D parameters and buffers
    images, labels = channels_last_batch((images, labels))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def to_channels_last(model: nn.Module) -> nn.Module:
    """Lay out ``model``'s 4-D parameters and buffers channels-last; changes and returns it.

    The parameter objects stay the same (an optimizer built before or after holds them)."""
    return model.to(memory_format=torch.channels_last)


def channels_last_batch(batch: Any) -> Any:
    """``batch`` with its images (a 4-D tensor first in a tuple or list) channels-last; any
    other batch as it is. A tensor already in that layout is returned without a copy."""
    if isinstance(batch, (tuple, list)) and batch and _is_image_batch(batch[0]):
        images = batch[0].contiguous(memory_format=torch.channels_last)
        rest = list(batch[1:])
        return (images, *rest) if isinstance(batch, tuple) else [images, *rest]
    if _is_image_batch(batch):
        return batch.contiguous(memory_format=torch.channels_last)
    return batch


def _is_image_batch(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() == 4


__all__ = ["channels_last_batch", "to_channels_last"]
