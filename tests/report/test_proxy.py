"""Tests for report/proxy.py: rank correlations and the standard error of an accuracy."""

from __future__ import annotations

import math
import random

import pytest

from slimnas.report.proxy import accuracy_standard_error, kendall_tau, spearman_rho


def test_perfect_reversed_and_tied_orders():
    x = [0.1, 0.2, 0.3, 0.4]
    assert kendall_tau(x, [1, 2, 3, 4]) == 1.0
    assert kendall_tau(x, [4, 3, 2, 1]) == -1.0
    assert spearman_rho(x, [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau(x, [1, 1, 1, 1]))
    # One swapped pair of six: (5 - 1) / 6.
    assert kendall_tau(x, [1, 3, 2, 4]) == pytest.approx(4 / 6)


def test_agrees_with_scipy_on_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for _ in range(20):
        x = [rng.randint(0, 5) for _ in range(12)]
        y = [rng.randint(0, 5) for _ in range(12)]
        assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y)[0])
        assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


def test_standard_error():
    assert accuracy_standard_error(0.5, 1000) == pytest.approx(0.0158, abs=1e-4)
    assert accuracy_standard_error(1.0, 10) == 0.0
    with pytest.raises(ValueError):
        accuracy_standard_error(0.5, 0)
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1])
