"""MobileNetV2 for ImageNet and CIFAR, with a width multiplier.

Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks", arXiv 1801.04381:
a stride-2 3x3 stem with 32 channels, the inverted-residual bottlenecks of table 2 (expansion t,
channels c, repeats n, first stride s), a 1x1 conv to 1280 channels, global average pooling,
dropout and a linear classifier. The layout and parameter names are torchvision's, so that the
ImageNet model has exactly torchvision's 3,504,872 parameters and 300.8 M MACs.

Differences from the paper:

- As in torchvision, the last conv keeps 1280 channels for `width_mult` below 1 (the paper's
  table 2 and reference code do the same); all other counts are scaled and rounded to multiples
  of 8 with `make_divisible`.
- `mobilenet_v2_cifar` is the common CIFAR variant (not in the paper): the stem has stride 1 and
  the second bottleneck stage (c = 24) has stride 1 instead of 2, so a 32x32 input ends at 4x4
  instead of 1x1. Everything else, dropout 0.2 included, is the ImageNet model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slimnas.errors import ConfigError
from slimnas.rounding import make_divisible

# Table 2 of the paper: expansion t, output channels c, repeats n, stride of the first repeat s.
IMAGENET_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# The CIFAR variant keeps the table but does not downsample in the c = 24 stage.
CIFAR_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias, 'same' padding) + BatchNorm + ReLU6, named `0`, `1`, `2` as in torchvision.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size (odd).
        stride: Conv stride.
        groups: Conv groups; `groups == in_channels` makes it depthwise.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1) - depthwise (3x3) - linear project (1x1) bottleneck (paper table 1).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the depthwise conv (1 or 2).
        expand_ratio: Hidden channels over input channels (t); with 1 the expansion is skipped.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        self.stride = stride
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(in_channels, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            # Linear bottleneck: no activation after the projection (paper section 3.2).
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 backbone and classifier.

    Args:
        width_mult: Multiplier on every channel count (the last conv is never scaled below 1280).
        num_classes: Outputs of the classifier.
        setting: Rows (t, c, n, s) of the bottleneck table; defaults to the paper's.
        stem_stride: Stride of the first 3x3 conv (2 for ImageNet, 1 for CIFAR).
        dropout: Dropout probability before the classifier.

    Raises:
        ConfigError: If `width_mult` is not positive or `setting` has a malformed row.
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        setting: Sequence[Sequence[int]] = IMAGENET_SETTING,
        stem_stride: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ConfigError(f"width_mult must be positive, got {width_mult}")
        if any(len(row) != 4 for row in setting):
            raise ConfigError("each MobileNetV2 setting row must be (t, c, n, s)")
        in_channels = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU6(3, in_channels, stride=stem_stride)]
        for t, c, n, s in setting:
            out_channels = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(in_channels, out_channels, s if i == 0 else 1, t))
                in_channels = out_channels
        features.append(ConvBNReLU6(in_channels, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes)
        )

        # torchvision's initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.classifier(x)


def mobilenet_v2(width_mult: float = 1.0, num_classes: int = 1000) -> MobileNetV2:
    """ImageNet MobileNetV2 (224x224 input): 3.50 M parameters and 300.8 M MACs at width 1.0.

    Args:
        width_mult: Multiplier on every channel count.
        num_classes: Outputs of the classifier.
    """
    return MobileNetV2(width_mult, num_classes)


def mobilenet_v2_cifar(width_mult: float = 1.0, num_classes: int = 10) -> MobileNetV2:
    """CIFAR MobileNetV2 (32x32 input): stem stride 1 and the c = 24 stage stride 1.

    Args:
        width_mult: Multiplier on every channel count.
        num_classes: Outputs of the classifier.
    """
    return MobileNetV2(width_mult, num_classes, setting=CIFAR_SETTING, stem_stride=1)
