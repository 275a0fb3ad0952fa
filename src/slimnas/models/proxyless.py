"""The ProxylessNAS MBConv search space, written as plain modules with `slimnas.Choice` blocks.

Cai, Zhu & Han 2019, "ProxylessNAS: Direct Neural Architecture Search on Target Task and
Hardware", arXiv 1812.00332, section 4.2: a 3x3 stride-2 stem with 32 channels, a fixed MBConv
(expansion 1, kernel 3) to 16 channels, then six searched stages of widths (24, 40, 80, 96, 192,
320), 4 blocks each except the last (1), first-block strides (2, 2, 2, 1, 2, 1). Every searched
block chooses an MBConv with kernel 3, 5 or 7 and expansion 3 or 6; a block with an identity
shortcut (stride 1, same channels) may also choose the zero operator, which skips it, so depth
is searched through that choice. A 1x1 "feature mix" conv to 1280 channels, global average
pooling, dropout and a linear classifier end the net. Each searched block's `Choice` is traced
as one `OpUnit` (its candidates' inner convs become channel units); `Supernet.export` replaces
it by the chosen candidate.

Differences from the paper and its released search code:

- Candidates are ordered largest first (``k7e6`` ... ``k3e3``, then ``zero``), because a
  Choice's first candidate is its default: the space's ``max_arch`` is then the largest net.
- BatchNorm keeps torch's defaults (momentum 0.1, eps 1e-5); the search code uses eps 1e-3.
- Initialisation follows the search code's "he_fout": convs normal with std
  sqrt(2 / (k·k·C_out)), BatchNorm weight 1 and bias 0, the linear weight uniform in
  ±1/sqrt(C_in) (torch's default bound) with bias 0.
- `proxyless_cifar` is not the paper's CIFAR space (a PyramidNet tree-cell space whose search
  code was never released): it is the ImageNet space with the stem and the first searched stage
  at stride 1, so a 32x32 input ends at 4x4, as `mobilenet_v2_cifar` does.
- `proxyless_cifar_small` (not in the paper) halves the searched blocks per stage and the head,
  so that a 2-core CPU trains it in minutes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slimnas.dynamic.choice import Choice, Zero
from slimnas.errors import ConfigError
from slimnas.models.mobilenet_v2 import ConvBNReLU6
from slimnas.rounding import make_divisible

KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANSIONS: tuple[int, ...] = (3, 6)
# Section 4.2: output widths, blocks and first-block strides of the six searched stages.
WIDTHS: tuple[int, ...] = (24, 40, 80, 96, 192, 320)
BLOCKS: tuple[int, ...] = (4, 4, 4, 4, 4, 1)
IMAGENET_STRIDES: tuple[int, ...] = (2, 2, 2, 1, 2, 1)
# The CIFAR layout keeps the first searched stage at full resolution (like mobilenet_v2_cifar).
CIFAR_STRIDES: tuple[int, ...] = (1, 2, 2, 1, 2, 1)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without its shortcut: expand (1x1), depthwise (kxk), project.

    Parameter names follow the ProxylessNAS code (`inverted_bottleneck`, `depth_conv`,
    `point_linear`). The residual add belongs to the enclosing block.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Depthwise kernel size (odd).
        stride: Depthwise stride (1 or 2).
        expand_ratio: Hidden channels over input channels; with 1 the expansion is omitted.

    Raises:
        ConfigError: If the kernel is not a positive odd number, the stride not 1 or 2, or the
            expansion not positive.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(
                f"MBConv kernel_size must be a positive odd number, got {kernel_size}"
            )
        if stride not in (1, 2):
            raise ConfigError(f"MBConv stride must be 1 or 2, got {stride}")
        if expand_ratio < 1:
            raise ConfigError(f"MBConv expand_ratio must be at least 1, got {expand_ratio}")
        hidden = int(round(in_channels * expand_ratio))
        self.inverted_bottleneck = (
            ConvBNReLU6(in_channels, hidden, kernel_size=1) if expand_ratio != 1 else None
        )
        self.depth_conv = ConvBNReLU6(hidden, hidden, kernel_size, stride, groups=hidden)
        # Linear bottleneck: no activation after the projection.
        self.point_linear = nn.Sequential(
            nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))

    @torch.no_grad()
    def inherit_from(self, source: MBConv) -> None:
        """Overwrite this MBConv's weights with a slice of a wider, larger-kernel ``source``.

        As Once-for-All's elastic expansion and kernel (Cai et al. 2020, §3.2, without its
        kernel transformation matrices): the hidden channels kept are ``source``'s most important
        ones (L1 norm of the projection's input column, their order kept), the depthwise kernel
        is the centre of ``source``'s, and every BatchNorm (weights and statistics) follows its
        channels. Not in ProxylessNAS, whose candidates never share weights.

        Raises:
            ConfigError: If ``source`` has fewer hidden channels, a smaller kernel, other
                in/out channels, stride or expansion layout.
        """
        mine, theirs = self.depth_conv[0], source.depth_conv[0]
        k, big = mine.kernel_size[0], theirs.kernel_size[0]
        hidden = mine.out_channels
        if (
            hidden > theirs.out_channels
            or k > big
            or mine.stride != theirs.stride
            or self.point_linear[0].out_channels != source.point_linear[0].out_channels
            or (self.inverted_bottleneck is None) != (source.inverted_bottleneck is None)
            or (
                self.inverted_bottleneck is not None
                and self.inverted_bottleneck[0].in_channels
                != source.inverted_bottleneck[0].in_channels
            )
        ):
            raise ConfigError(
                f"an MBConv (k{k}, {hidden} hidden) inherits only from a larger one of the same "
                f"block, got k{big} with {theirs.out_channels} hidden"
            )
        importance = source.point_linear[0].weight.abs().sum(dim=(0, 2, 3))
        keep = importance.topk(hidden).indices.sort().values
        lo = (big - k) // 2

        def copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, index=None) -> None:
            for name in ("weight", "bias", "running_mean", "running_var"):
                value = getattr(src, name)
                getattr(dst, name).copy_(value if index is None else value[index])
            dst.num_batches_tracked.copy_(src.num_batches_tracked)

        if self.inverted_bottleneck is not None:
            self.inverted_bottleneck[0].weight.copy_(source.inverted_bottleneck[0].weight[keep])
            copy_bn(self.inverted_bottleneck[1], source.inverted_bottleneck[1], keep)
        mine.weight.copy_(theirs.weight[keep, :, lo : lo + k, lo : lo + k])
        copy_bn(self.depth_conv[1], source.depth_conv[1], keep)
        self.point_linear[0].weight.copy_(source.point_linear[0].weight[:, keep])
        copy_bn(self.point_linear[1], source.point_linear[1])


def _check_candidates(kernels: Sequence[int], expansions: Sequence[int]) -> None:
    if not kernels or not expansions:
        raise ConfigError("ProxylessNAS needs at least one kernel and one expansion ratio")
    bad = [k for k in kernels if not isinstance(k, int) or k < 1 or k % 2 == 0]
    if bad:
        raise ConfigError(f"kernels must be positive odd integers (3, 5, 7), got {list(kernels)}")
    if any(not isinstance(e, int) or e < 1 for e in expansions):
        raise ConfigError(
            f"expansions must be integers of at least 1 (3, 6), got {list(expansions)}"
        )
    if len(set(kernels)) != len(kernels) or len(set(expansions)) != len(expansions):
        raise ConfigError(
            f"kernels {list(kernels)} and expansions {list(expansions)} must not repeat a value"
        )


class ProxylessBlock(nn.Module):
    """One searched block: a `Choice` of MBConvs (plus ``zero`` if it has an identity shortcut).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Depthwise stride of every candidate.
        kernels: Candidate depthwise kernel sizes.
        expansions: Candidate expansion ratios.
        zero: Offer the zero operator (skip the block) where the block has an identity shortcut.

    Raises:
        ConfigError: If a kernel or expansion is invalid or repeated.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        kernels: Sequence[int] = KERNELS,
        expansions: Sequence[int] = EXPANSIONS,
        zero: bool = True,
    ) -> None:
        super().__init__()
        _check_candidates(kernels, expansions)
        self.shortcut = stride == 1 and in_channels == out_channels
        candidates: dict[str, nn.Module] = {
            f"k{k}e{e}": MBConv(in_channels, out_channels, k, stride, e)
            for k in sorted(kernels, reverse=True)
            for e in sorted(expansions, reverse=True)
        }
        if zero and self.shortcut:
            candidates["zero"] = Zero()
        self.op: nn.Module = Choice(candidates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # An exported block whose chosen op is zero holds the Zero module itself: an identity.
        if isinstance(self.op, Zero):
            return x
        out = self.op(x)
        return x + out if self.shortcut else out


class ProxylessNet(nn.Module):
    """The ProxylessNAS over-parameterised net: stem, fixed first block, searched stages, head.

    Args:
        width_mult: Multiplier on every channel count (rounded to multiples of 8); the head
            is scaled only when it is above 1.
        num_classes: Outputs of the classifier.
        blocks: Searched blocks per stage (six stages).
        strides: Stride of each stage's first block.
        stem_stride: Stride of the 3x3 stem (2 for ImageNet, 1 for CIFAR).
        kernels: Candidate depthwise kernel sizes of every searched block.
        expansions: Candidate expansion ratios of every searched block.
        zero: Offer the zero operator on identity-shortcut blocks.
        dropout: Dropout probability before the classifier.
        head_channels: Channels of the feature-mix 1x1 conv at width 1.

    Raises:
        ConfigError: If a value is out of range or the per-stage sequences have the wrong length.
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        blocks: Sequence[int] = BLOCKS,
        strides: Sequence[int] = IMAGENET_STRIDES,
        stem_stride: int = 2,
        kernels: Sequence[int] = KERNELS,
        expansions: Sequence[int] = EXPANSIONS,
        zero: bool = True,
        dropout: float = 0.0,
        head_channels: int = 1280,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ConfigError(f"width_mult must be positive, got {width_mult}")
        if len(blocks) != len(WIDTHS) or len(strides) != len(WIDTHS):
            raise ConfigError(
                f"blocks and strides need one value per stage ({len(WIDTHS)}), "
                f"got {list(blocks)} and {list(strides)}"
            )
        if any(n < 1 for n in blocks) or any(s not in (1, 2) for s in (*strides, stem_stride)):
            raise ConfigError(
                f"blocks must be at least 1 and strides 1 or 2, got blocks {list(blocks)}, "
                f"strides {list(strides)}, stem_stride {stem_stride}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        _check_candidates(kernels, expansions)

        stem_channels = make_divisible(32 * width_mult)
        first_channels = make_divisible(16 * width_mult)
        self.stem = ConvBNReLU6(3, stem_channels, stride=stem_stride)
        self.first_block = MBConv(stem_channels, first_channels, 3, 1, 1)
        in_channels = first_channels
        stages = []
        for width, n, stride in zip(WIDTHS, blocks, strides):
            out_channels = make_divisible(width * width_mult)
            stage = []
            for i in range(n):
                stage.append(
                    ProxylessBlock(
                        in_channels,
                        out_channels,
                        stride if i == 0 else 1,
                        kernels,
                        expansions,
                        zero,
                    )
                )
                in_channels = out_channels
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.last_channel = (
            make_divisible(head_channels * width_mult) if width_mult > 1.0 else head_channels
        )
        self.feature_mix = ConvBNReLU6(in_channels, self.last_channel, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes)
        )
        self._init_he_fout()

    def _init_he_fout(self) -> None:
        """The search code's "he_fout" initialisation (see the module docstring)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / m.in_features**0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.first_block(self.stem(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(self.feature_mix(x), (1, 1)), 1)
        return self.classifier(x)


def proxyless_imagenet(width_mult: float = 1.0, num_classes: int = 1000) -> ProxylessNet:
    """The ProxylessNAS ImageNet search space (224x224 input), 21 searched blocks.

    Args:
        width_mult: Multiplier on every channel count.
        num_classes: Outputs of the classifier.
    """
    return ProxylessNet(width_mult, num_classes)


def proxyless_cifar(width_mult: float = 1.0, num_classes: int = 10) -> ProxylessNet:
    """The ImageNet search space laid out for 32x32 inputs: stem and first searched stage at
    stride 1 (strides 1, 2, 2, 1, 2, 1), so the last feature map is 4x4. Not the paper's CIFAR
    space (see the module docstring).

    Args:
        width_mult: Multiplier on every channel count.
        num_classes: Outputs of the classifier.
    """
    return ProxylessNet(width_mult, num_classes, strides=CIFAR_STRIDES, stem_stride=1)


def proxyless_cifar_small(width_mult: float = 1.0, num_classes: int = 10) -> ProxylessNet:
    """`proxyless_cifar` with blocks (2, 2, 2, 2, 2, 1) and a 640-channel head instead of 1280:
    11 searched blocks, small enough that a 2-core CPU trains it in minutes. Not in the paper.

    Args:
        width_mult: Multiplier on every channel count.
        num_classes: Outputs of the classifier.
    """
    return ProxylessNet(
        width_mult,
        num_classes,
        blocks=(2, 2, 2, 2, 2, 1),
        strides=CIFAR_STRIDES,
        stem_stride=1,
        head_channels=640,
    )
