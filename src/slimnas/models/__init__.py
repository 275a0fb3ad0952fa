"""Reference models: plain `torch.nn.Module`s with a width multiplier.

CIFAR ResNets of He et al. 2016 (arXiv 1512.03385) and MobileNetV2 of Sandler et al. 2018
(arXiv 1801.04381), written like torchvision's so that tracers see ordinary convs, BNs and adds;
and the ProxylessNAS search space of Cai et al. 2019 (arXiv 1812.00332), whose searched blocks
are `slimnas.Choice`s of MBConvs.
`MODELS` maps each name to its constructor.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from slimnas.models.cifar_resnet import CifarResNet, resnet20, resnet32, resnet56, resnet110
from slimnas.models.mobilenet_v2 import MobileNetV2, mobilenet_v2, mobilenet_v2_cifar
from slimnas.models.proxyless import (
    MBConv,
    ProxylessBlock,
    ProxylessNet,
    proxyless_cifar,
    proxyless_cifar_small,
    proxyless_imagenet,
)
from slimnas.rounding import make_divisible

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v2_cifar": mobilenet_v2_cifar,
    "proxyless_imagenet": proxyless_imagenet,
    "proxyless_cifar": proxyless_cifar,
    "proxyless_cifar_small": proxyless_cifar_small,
}

__all__ = [
    "MODELS",
    "CifarResNet",
    "MBConv",
    "MobileNetV2",
    "ProxylessBlock",
    "ProxylessNet",
    "make_divisible",
    "mobilenet_v2",
    "mobilenet_v2_cifar",
    "proxyless_cifar",
    "proxyless_cifar_small",
    "proxyless_imagenet",
    "resnet20",
    "resnet32",
    "resnet56",
    "resnet110",
]
