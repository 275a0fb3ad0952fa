"""Model factories for the tests of ``model.name = "package.module:callable"``: importable as
``tests.helpers.models:<name>`` from the repository root (the working directory of the tests)."""

from __future__ import annotations

from torch import nn


class SmallNet(nn.Module):
    """Two conv-BN-ReLU stages with a residual block, global pooling and a linear head."""

    def __init__(self, num_classes: int = 10, width: int = 16, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.block = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
        )
        self.down = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = (x + self.block(x)).relu()
        x = self.down(x)
        return self.head(x.mean(dim=(2, 3)))


def make_net(num_classes: int = 10, width: int = 16, in_channels: int = 3) -> nn.Module:
    """A small CNN; ``in_channels=1`` for grayscale images."""
    return SmallNet(num_classes, width, in_channels)


def make_net_ten_classes(width: int = 16) -> nn.Module:
    """A factory without ``num_classes``: always 10 outputs."""
    return SmallNet(10, width)


def make_fixed_size_net(size: int = 32, num_classes: int = 10) -> nn.Module:
    """A CNN whose head is a linear layer on the flattened ``size × size`` feature map."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * size * size, num_classes),
    )


def make_raising(num_classes: int = 10) -> nn.Module:
    raise ValueError("this factory always fails")


def make_not_a_module(num_classes: int = 10) -> dict:
    return {"num_classes": num_classes}


NOT_CALLABLE = 3
