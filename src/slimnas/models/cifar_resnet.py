"""CIFAR ResNets (ResNet-20/32/56/110) with a width multiplier.

He et al. 2016, "Deep Residual Learning for Image Recognition", arXiv 1512.03385, section 4.2: a
3x3 stem conv with 16 channels, then three stages of n BasicBlocks with 16, 32 and 64 channels on
32x32, 16x16 and 8x8 feature maps (depth 6n + 2), global average pooling and a linear classifier.

Differences from the paper:

- `width_mult` scales every channel count, rounded with `make_divisible` (multiples of 8). At
  width 1.0 the network is the paper's.
- Both shortcut options of the paper are offered: option A (parameter-free: subsample and
  zero-pad the channels, used for the paper's CIFAR results) and option B (1x1 conv + BN
  projection where the shape changes, identity elsewhere, as in torchvision). The default is B.
- Submodule names follow torchvision's ResNet (`conv1`, `bn1`, `layer1`..`layer3`, `fc`, and a
  block's shortcut is `downsample`, None when it is the identity).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimnas.errors import ConfigError
from slimnas.rounding import make_divisible

STAGE_CHANNELS = (16, 32, 64)
SHORTCUTS = ("A", "B")


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: subsample spatially and zero-pad the new channels (no parameters).

    Args:
        in_channels: Channels of the block's input.
        out_channels: Channels of the block's output; not fewer than `in_channels`.
        stride: Spatial subsampling factor (1 or 2).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ConfigError(
                f"shortcut A cannot shrink channels ({in_channels} -> {out_channels}); "
                "use shortcut='B'"
            )
        self.stride = stride
        extra = out_channels - in_channels
        # Half the new channels on each side, the odd one at the end (paper-style symmetric pad).
        self.pad_front = extra // 2
        self.pad_back = extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        # F.pad's tuple runs from the last dim backwards: (W, W, H, H, C, C).
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_front}, {self.pad_back})"


def projection_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Option B shortcut: a strided 1x1 conv followed by BatchNorm.

    Args:
        in_channels: Channels of the block's input.
        out_channels: Channels of the block's output.
        stride: Stride of the 1x1 conv.

    Returns:
        `Sequential(conv, bn)`, named `0` and `1` as in torchvision.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (paper figure 2, left).

    Args:
        in_channels: Channels of the input.
        out_channels: Channels of both convs' outputs.
        stride: Stride of the first conv.
        shortcut: "A" (zero-pad) or "B" (projection) where the shape changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            if shortcut == "A":
                self.downsample = ZeroPadShortcut(in_channels, out_channels, stride)
            else:
                self.downsample = projection_shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # The identity is `x` itself so that a tracer sees `out + x`.
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class CifarResNet(nn.Module):
    """ResNet of depth 6n + 2 for 32x32 inputs (paper section 4.2).

    Args:
        depth: Number of weighted layers, 6n + 2 (20, 32, 44, 56, 110, ...).
        width_mult: Multiplier on every channel count (16, 32, 64 and the stem's 16).
        num_classes: Outputs of the final linear layer.
        shortcut: "A" (parameter-free zero-pad) or "B" (1x1 conv + BN projection).

    Raises:
        ConfigError: If `depth` is not 6n + 2, `width_mult` is not positive, or `shortcut` is not
            "A" or "B".
    """

    def __init__(
        self,
        depth: int,
        width_mult: float = 1.0,
        num_classes: int = 10,
        shortcut: str = "B",
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ConfigError(f"CIFAR ResNet depth must be 6n + 2 (20, 32, 56, 110), got {depth}")
        if width_mult <= 0:
            raise ConfigError(f"width_mult must be positive, got {width_mult}")
        if shortcut not in SHORTCUTS:
            raise ConfigError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        blocks_per_stage = (depth - 2) // 6
        channels = [make_divisible(c * width_mult) for c in STAGE_CHANNELS]

        self.conv1 = nn.Conv2d(3, channels[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        in_channels = channels[0]
        stages = []
        for stage, out_channels in enumerate(channels):
            blocks = []
            for i in range(blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_channels, out_channels, stride, shortcut))
                in_channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet20(width_mult: float = 1.0, num_classes: int = 10, shortcut: str = "B") -> CifarResNet:
    """ResNet-20 (n = 3): 0.27 M parameters and 40.6 M MACs at width 1.0.

    Args:
        width_mult: Multiplier on every channel count.
        num_classes: Outputs of the classifier.
        shortcut: "A" (zero-pad) or "B" (projection).
    """
    return CifarResNet(20, width_mult, num_classes, shortcut)


def resnet32(width_mult: float = 1.0, num_classes: int = 10, shortcut: str = "B") -> CifarResNet:
    """ResNet-32 (n = 5): 0.46 M parameters at width 1.0.

    Args:
        width_mult: Multiplier on every channel count.
        num_classes: Outputs of the classifier.
        shortcut: "A" (zero-pad) or "B" (projection).
    """
    return CifarResNet(32, width_mult, num_classes, shortcut)


def resnet56(width_mult: float = 1.0, num_classes: int = 10, shortcut: str = "B") -> CifarResNet:
    """ResNet-56 (n = 9): 0.85 M parameters and 125.5 M MACs at width 1.0.

    Args:
        width_mult: Multiplier on every channel count.
        num_classes: Outputs of the classifier.
        shortcut: "A" (zero-pad) or "B" (projection).
    """
    return CifarResNet(56, width_mult, num_classes, shortcut)


def resnet110(width_mult: float = 1.0, num_classes: int = 10, shortcut: str = "B") -> CifarResNet:
    """ResNet-110 (n = 18): 1.7 M parameters at width 1.0.

    Args:
        width_mult: Multiplier on every channel count.
        num_classes: Outputs of the classifier.
        shortcut: "A" (zero-pad) or "B" (projection).
    """
    return CifarResNet(110, width_mult, num_classes, shortcut)
