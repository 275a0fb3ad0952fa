"""`fit_segment_scales`: per-segment factors of a latency table's calibration, fitted on whole
archs. Synthetic archs whose latency is a known weighted sum of their segments: the fit recovers
the weights where they differ, leaves them at 1 where a line suffices, and never goes negative."""

from __future__ import annotations

import numpy as np
import pytest

from slimnas.cost.latency.fit import FLOOR, MIN_ARCHS, fit_line, fit_segment_scales


def archs(count: int, weights, seed: int = 0, noise: float = 0.005, overhead: float = 0.3):
    """``count`` archs of ``len(weights)`` segments: each runs with probability 0.8 at a random
    latency; the whole takes ``overhead + Σ w_s v_s``, times 1 ± ``noise``."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.02, 0.2, (count, len(weights))) * (
        rng.random((count, len(weights))) < 0.8
    )
    measured = (overhead + values @ np.asarray(weights)) * (1 + noise * rng.standard_normal(count))
    return values, measured


def line_prediction(values, measured, factors, test):
    sums = values @ np.asarray(factors)
    overhead, scale = fit_line(list(sums[:-test]), list(measured[:-test]))
    return overhead + scale * sums[-test:]


def test_factors_recover_segments_that_are_off_by_their_own_amounts() -> None:
    weights = [1.0, 1.0, 0.4, 2.5, 1.0, 1.0, 1.6, 0.7]
    values, measured = archs(64 + 100, weights)
    factors, strength = fit_segment_scales(values[:64], measured[:64])
    assert strength is not None
    # relative to the common scale, which the line carries
    relative = np.asarray(factors) / np.mean(factors) * np.mean(weights)
    assert relative == pytest.approx(weights, rel=0.15)
    held_out = measured[64:]
    error = np.abs(line_prediction(values, measured, factors, 100) - held_out) / held_out
    plain = np.abs(line_prediction(values, measured, [1.0] * 8, 100) - held_out) / held_out
    assert error.mean() < plain.mean() / 3


def test_a_line_that_fits_keeps_the_factors_near_one() -> None:
    values, measured = archs(64, [1.3] * 8, seed=1)
    factors, strength = fit_segment_scales(values, measured)
    assert strength is None or np.ptp(factors) < 0.05 * np.mean(factors)


def test_too_few_archs_fit_no_factors() -> None:
    values, measured = archs(MIN_ARCHS - 1, [1.0, 3.0, 0.5])
    assert fit_segment_scales(values, measured) == ([1.0, 1.0, 1.0], None)


def test_factors_are_never_below_the_floor() -> None:
    values, measured = archs(64, [1.0, -0.8, 1.0, 1.0], seed=2, noise=0.0, overhead=1.0)
    factors, strength = fit_segment_scales(values, measured)
    assert strength is not None and min(factors) == FLOOR and max(factors) > 0.5
