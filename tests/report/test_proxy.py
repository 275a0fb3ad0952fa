"""Tests for report/proxy.py: rank correlations and the standard error of an accuracy."""

from __future__ import annotations

import math
import random

import pytest

from slimnas.report.proxy import (
    accuracy_standard_error,
    kendall_tau,
    proxy_section,
    spearman_rho,
)


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


def _summary(search: float, test: float, scored_by: str | None = None) -> dict:
    return {"search_accuracy": search, "test_mean": test, "scored_by": scored_by}


def test_report_section_ranks_the_found_archs_and_reads_the_uniform_path():
    summaries = [_summary(0.30, 0.50), _summary(0.35, 0.55), _summary(0.40, 0.52)]
    rising = [
        {"ratio": r, "macs_share": r * r, "accuracy": a, "images": 1000}
        for r, a in ((0.25, 0.20), (0.5, 0.30), (1.0, 0.40))
    ]
    text = "\n".join(proxy_section(summaries, {"uniform_path": rising}))
    assert "τ = 0.33" in text and "ρ = 0.50" in text  # one discordant pair of three
    assert "rises with width everywhere" in text and "| 0.50 | 25.0 | 30.00 |" in text
    falling = [dict(p) for p in rising]
    falling[1]["accuracy"] = 0.45  # then 0.40 at full width: a drop of 5 points > 1.5
    text = "\n".join(proxy_section(summaries, {"uniform_path": falling}))
    assert "falls where width grows at 1 of 2 steps" in text


def test_report_section_with_too_few_archs():
    text = "\n".join(proxy_section([_summary(0.3, 0.5), _summary(0.3, None)], None))
    assert "1 found arch(s)" in text and "too few" in text and "uniform path" not in text


def test_report_section_ranks_only_archs_of_one_network():
    # Three archs of the shared supernet in the same order as retrained; two of TAS's
    # per-budget networks whose higher scores would break that order if they were pooled.
    shared = [_summary(0.30, 0.50, "supernet"), _summary(0.35, 0.55), _summary(0.40, 0.60)]
    own = [_summary(0.90, 0.52, "tas macs<=50%"), _summary(0.95, 0.51, "tas macs<=30%")]
    text = "\n".join(proxy_section(shared + own, None))
    assert "weights of 3 networks" in text
    assert "Over the 3 found archs" in text and "τ = 1.00" in text  # pooled it would be 0.2
    assert text.count("1 found arch(s)") == 2 and "`tas macs<=50%`'s own network" in text


def test_report_section_skips_a_uniform_path_without_width():
    # An ops-only space (`space.channels = false`): every ratio gives the max arch, so the
    # six stored rows were one arch scored six times, not a rise with width.
    flat = [
        {"ratio": r, "macs_share": 1.0, "accuracy": 0.45, "images": 5000}
        for r in (0.25, 0.4, 0.55, 0.7, 0.85, 1.0)
    ]
    text = "\n".join(proxy_section([_summary(0.3, 0.5)], {"uniform_path": flat}))
    assert "no uniform path to check" in text
    assert "rises with width" not in text and "| 0.25 |" not in text
    # Two ratios that round to one arch count once.
    repeated = [
        {"ratio": r, "macs_share": m, "accuracy": a, "images": 1000}
        for r, m, a in ((0.25, 0.1, 0.2), (0.4, 0.1, 0.2), (1.0, 1.0, 0.4))
    ]
    text = "\n".join(proxy_section([_summary(0.3, 0.5)], {"uniform_path": repeated}))
    assert "rises with width" in text and "| 0.40 |" not in text and "| 1.00 |" in text
