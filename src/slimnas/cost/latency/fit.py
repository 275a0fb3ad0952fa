"""Fitting a latency table's calibration to whole archs measured on the machine.

Two fits, both on the *net* segment latencies of the calibration archs (`segment_values`):

- `fit_line`: ``measured = overhead + scale * sum``, robustly (Theil–Sen).
- `fit_segment_scales`: one factor per segment, ``measured ≈ a + c * Σ_s factor_s * value_s``.
  Segments timed alone are wrong by amounts of their own, not by one common scale: on
  onnxruntime a conv at 32x32 pays NCHWc reorders of large tensors alone but not inside the
  model, while a small late conv costs more in the model than alone. A line cannot undo errors
  that differ per segment, and the bench shows it: on the CIFAR MobileNetV2 with onnxruntime at
  batch 1, 50 archs ranked with Kendall tau 0.853 under the line and 0.936 with the factors
  fitted on 64 archs (docs/latency.md). This is our extension of ProxylessNAS's table sum
  (arXiv 1812.00332, §3.3), which has no correction at all.

  The factors are a ridge regression (Hoerl & Kennard 1970) towards 1 on relative errors, its
  strength chosen by 5-fold cross-validation among a few values and "no factors" (all 1), with
  the one-standard-error rule: the most regular candidate within a standard error of the best.
  With too few archs, or a table whose line fits about as well, the factors stay 1. A factor is
  never below `FLOOR`: a segment whose widths the whole archs hardly tell apart (it varies with
  others) would otherwise come out near 0, and a search would widen it for free.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

MIN_ARCHS = 16  # fewer calibration archs fit the line only
# The least factor; in onnxruntime's per-node profiles, segments inside whole graphs ran at
# 0.8-1.6x their isolated entries.
FLOOR = 0.25
_FOLDS = 5
_STRENGTHS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 1e-1)


def fit_line(sums: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """``measured = overhead + scale * sum`` by the Theil–Sen estimator (Sen 1968, "Estimates of
    the regression coefficient based on Kendall's tau"): the scale is the median of the slopes
    between every two points, the overhead the median of ``measured - scale * sum``. Unlike least
    squares it ignores a minority of points slowed down by other processes. With fewer than two
    distinct sums (or a slope that is not positive) the scale is 1 and the overhead the median
    difference."""
    slopes = [
        (measured[j] - measured[i]) / (sums[j] - sums[i])
        for i in range(len(sums))
        for j in range(i + 1, len(sums))
        if sums[j] != sums[i]
    ]
    scale = statistics.median(slopes) if slopes else 0.0
    if scale <= 0:
        scale = 1.0
    return statistics.median(y - scale * x for x, y in zip(sums, measured)), scale


def _ridge(values: np.ndarray, measured: np.ndarray, strength: float) -> np.ndarray:
    """Intercept and factors minimising Σ_i ((a + Σ_s f_s v_is - y_i) / y_i)² + n·strength·Σ_s
    (f_s - 1)², by least squares on the stacked system."""
    n, m = values.shape
    weight = 1.0 / measured
    rows = np.column_stack([np.ones(n), values]) * weight[:, None]
    penalty = np.zeros((m, m + 1))
    penalty[:, 1:] = np.eye(m) * np.sqrt(n * strength)
    target = np.concatenate([measured * weight, np.full(m, np.sqrt(n * strength))])
    solution, *_ = np.linalg.lstsq(np.vstack([rows, penalty]), target, rcond=None)
    return solution


def _line_error(values: np.ndarray, measured: np.ndarray, train, test, factors=None) -> float:
    sums = values @ (np.ones(values.shape[1]) if factors is None else factors)
    overhead, scale = fit_line(list(sums[train]), list(measured[train]))
    predicted = overhead + scale * sums[test]
    return float((((predicted - measured[test]) / measured[test]) ** 2).sum())


def fit_segment_scales(
    values: Sequence[Sequence[float]], measured: Sequence[float], seed: int = 0
) -> tuple[list[float], float | None]:
    """Per-segment factors for archs whose net segment latencies are ``values`` (one row per
    arch, one column per segment, 0 where it does not run) and whose whole latency is
    ``measured``. Returns the factors and the ridge strength chosen (``None``: all factors 1,
    from too few archs or because cross-validation found them no better).

    Each candidate is scored by the squared relative error, on held-out folds, of the line fitted
    through the factored sums (the prediction `predict_latency` makes); the most regular one
    within a standard error (of the sum over folds) of the best is chosen.
    """
    x = np.asarray(values, dtype=np.float64)
    y = np.asarray(measured, dtype=np.float64)
    ones = [1.0] * x.shape[1]
    if len(y) < MIN_ARCHS or x.shape[1] == 0 or np.any(y <= 0):
        return ones, None
    _, scale = fit_line(list(x.sum(1)), list(y))
    scaled = x * scale  # factors of the scaled values are centred on 1
    order = np.random.default_rng(seed).permutation(len(y))
    folds = [(np.setdiff1d(order, f), f) for f in np.array_split(order, _FOLDS)]

    def factors(strength: float, rows) -> np.ndarray:
        return np.clip(_ridge(scaled[rows], y[rows], strength)[1:], FLOOR, None)

    # The one-standard-error rule (Hastie, Tibshirani & Friedman, ESL §7.10): of the candidates
    # whose cross-validated error is within one standard error of the least, the most regular.
    candidates = [None, *sorted(_STRENGTHS, reverse=True)]  # the most regular first
    errors = [
        np.array(
            [
                _line_error(x, y, train, test, None if s is None else factors(s, train))
                for train, test in folds
            ]
        )
        for s in candidates
    ]
    least = min(errors, key=np.sum)
    bound = least.sum() + least.std(ddof=1) * np.sqrt(_FOLDS)
    chosen = next(s for s, e in zip(candidates, errors) if e.sum() <= bound)
    if chosen is None:
        return ones, None
    return [float(f) for f in factors(chosen, order)], chosen


__all__ = ["FLOOR", "MIN_ARCHS", "fit_line", "fit_segment_scales"]
