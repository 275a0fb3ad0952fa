"""Channel rounding used by width multipliers and by the choices of channel units.

The rule is the one of MobileNetV1/V2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and
Linear Bottlenecks", arXiv 1801.04381, and the TensorFlow reference code): round to the nearest
multiple of a divisor, but never lose more than 10 % of the requested channels.
"""

from __future__ import annotations


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds a channel count to the nearest multiple of `divisor`.

    Args:
        v: Requested (possibly fractional) number of channels.
        divisor: The result is a multiple of this.
        min_value: Smallest result allowed; defaults to `divisor`.

    Returns:
        The rounded count: a multiple of `divisor`, at least `min_value`, and at least 90 % of `v`.
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    # Rounding down must not remove more than 10 % of the channels.
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v
