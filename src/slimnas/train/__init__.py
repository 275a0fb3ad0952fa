"""Training utilities."""

from slimnas.train.bn import recalibrate_bn

__all__ = ["recalibrate_bn"]
