"""Layers that run any choice of their units: hard (slice), soft (TAS mixture), binarized."""

from slimnas.dynamic.block import SkippableBlock
from slimnas.dynamic.choice import Choice, Zero, gate_to_logit_grad
from slimnas.dynamic.conv import DynamicConv2d, DynamicLinear
from slimnas.dynamic.mixed import DepthMix, WidthMix, channel_interpolate, mix_widths
from slimnas.dynamic.norm import DynamicBatchNorm1d, DynamicBatchNorm2d

__all__ = [
    "Choice",
    "DepthMix",
    "DynamicBatchNorm1d",
    "DynamicBatchNorm2d",
    "DynamicConv2d",
    "DynamicLinear",
    "SkippableBlock",
    "WidthMix",
    "Zero",
    "channel_interpolate",
    "gate_to_logit_grad",
    "mix_widths",
]
