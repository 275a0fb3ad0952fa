"""The report's latency columns: measured median and band, and the distance to a latency budget."""

from __future__ import annotations

import pytest

from slimnas.report import summarize, write_report
from slimnas.report.tables import budget_distance

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _row(method: str, seed: int, median: float, low: float, high: float) -> dict:
    return {
        "method": method,
        "budget": "latency_ms<=2",
        "seed": seed,
        "arch": {"conv": 8},
        "macs": 1e6,
        "params": 1e4,
        "memory": 1e5,
        "latency_ms": median,
        "latency_p10_ms": low,
        "latency_p90_ms": high,
        "latency_budget_ms": 2.0,
        "predicted_latency_ms": 1.9,
        "latency_setting": "onnxruntime, 1 thread(s), batch 1, cpu: Test CPU, median of 50",
        "search_accuracy": 0.5,
        "test_accuracy": 0.6 + 0.01 * seed,
    }


@pytest.mark.parametrize(
    ("median", "low", "verdict"),
    [(1.5, 1.4, "-0.50 (75 %), meets"), (2.1, 1.95, "within spread"), (2.5, 2.2, "over")],
)
def test_budget_distance_says_how_far_and_whether_it_meets(median, low, verdict) -> None:
    summary = {"latency_ms": median, "latency_p10_ms": low, "latency_budget_ms": 2.0}
    assert verdict in budget_distance(summary)
    assert budget_distance({"latency_ms": None, "latency_budget_ms": 2.0}) == "—"


def test_budget_distance_uses_the_measurement_at_the_tables_speed_when_there() -> None:
    # Measured 2.4 ms on a machine running 1.5x slower than when the table was calibrated.
    summary = {"latency_ms": 2.4, "latency_p10_ms": 2.3, "latency_budget_ms": 2.0}
    assert "over" in budget_distance(summary)
    summary |= {"latency_at_table_speed_ms": 1.6, "latency_p10_at_table_speed_ms": 1.53}
    assert budget_distance(summary) == "-0.40 (80 %), meets"
    summary |= {"latency_at_table_speed_ms": 2.1, "latency_p10_at_table_speed_ms": 1.9}
    assert "within spread" in budget_distance(summary)


def test_report_shows_measured_latency_against_the_budget(tmp_path) -> None:
    rows = [_row("uniform", s, 1.5 + 0.1 * s, 1.4, 1.8) for s in (0, 1)]
    rows += [_row("random", 0, 2.1, 1.95, 2.3)]
    summaries = summarize(rows)
    assert summaries[0]["latency_budget_ms"] == 2.0 and summaries[0]["latency_p10_ms"] == 1.4
    results = {"model": "resnet20", "max": {"macs": 2e6}, "units": [], "rows": rows}
    text = write_report(results, tmp_path).read_text()
    assert "Latency (ms) [p10–p90]" in text and "Measured vs budget (ms)" in text
    assert "1.55 [1.40–1.80]" in text and "meets" in text and "within spread" in text
    assert "onnxruntime, 1 thread(s), batch 1, cpu: Test CPU" in text
    assert (tmp_path / "accuracy_vs_latency.png").read_bytes()[:8] == PNG_SIGNATURE
