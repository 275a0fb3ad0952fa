"""Tests of `slimnas.report`: statistics, tables, figures, and the report without matplotlib."""

from __future__ import annotations

import json
import statistics
import sys

import pytest

from slimnas.errors import ConfigError
from slimnas.report import read_results, summarize, write_report
from slimnas.report.report import NO_MATPLOTLIB_NOTE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UNITS = [{"name": f"layer{i}.conv", "kind": "channel", "max": 16 * (1 + i // 2)} for i in range(6)]
UNITS.append({"name": "layer1", "kind": "depth", "max": 3})
MAX = {"macs": 40_000_000, "params": 270_000, "memory": 1_000_000}
BUDGETS = {"macs<=20M": 0.5, "macs<=30M": 0.75}
# Known test accuracies per (method, budget), one per seed 0, 1, 2.
ACCURACIES = {
    ("autoslim", "macs<=20M"): [0.80, 0.82, 0.84],
    ("autoslim", "macs<=30M"): [0.86, 0.87, 0.89],
    ("uniform", "macs<=20M"): [0.78, 0.79, 0.83],
    ("uniform", "macs<=30M"): [0.85, 0.85, 0.86],
    ("random", "macs<=20M"): [0.70, 0.75, 0.77],
    ("random", "macs<=30M"): [0.81, 0.84, 0.80],
}


def _arch(method: str, ratio: float) -> dict[str, int]:
    # autoslim keeps more channels in deeper layers, uniform the same ratio everywhere.
    tilt = {"autoslim": 0.15, "random": -0.1}.get(method, 0.0)
    out = {}
    for i, unit in enumerate(UNITS[:-1]):
        r = min(1.0, max(0.1, ratio + tilt * (i - 2.5) / 2.5))
        out[unit["name"]] = max(1, round(r * unit["max"]))
    return out | {"layer1": 2}


def _results(with_latency: bool = False) -> dict:
    rows = []
    for (method, budget), accuracies in ACCURACIES.items():
        ratio = BUDGETS[budget]
        for seed, accuracy in enumerate(accuracies):
            rows.append(
                {
                    "method": method,
                    "budget": budget,
                    "seed": seed,
                    "arch": _arch(method, ratio),
                    "macs": int(MAX["macs"] * ratio * 0.98),
                    "params": int(MAX["params"] * ratio),
                    "memory": int(MAX["memory"] * ratio),
                    "latency_ms": 1.5 * ratio if with_latency else None,
                    "search_accuracy": accuracy - 0.2,
                    "test_accuracy": accuracy,
                    "test_loss": 0.5,
                    "epochs": 3,
                }
            )
    return {
        "title": "Synthetic report",
        "model": "resnet20",
        "data": "builtin: 4500 train / 500 held-out / 1000 test images",
        "recipe": {"supernet_epochs": 2, "retrain_epochs": 3, "lr": {"base": 0.1}},
        "max": MAX,
        "units": UNITS,
        "rows": rows,
    }


def _expected_cell(values: list[float]) -> str:
    mean, std = statistics.mean(values), statistics.stdev(values)
    return f"{100 * mean:.2f} ± {100 * std:.2f} (n={len(values)})"


def _budget_section(text: str, budget: str) -> str:
    start = text.index(f"### Budget `{budget}`")
    return text[start : text.index("\n\n#", start)]


def _assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000


def test_summarize_groups_and_averages():
    summaries = summarize(_results()["rows"])
    assert [(s["budget"], s["method"]) for s in summaries] == [
        ("macs<=30M", "autoslim"),
        ("macs<=30M", "uniform"),
        ("macs<=30M", "random"),
        ("macs<=20M", "autoslim"),
        ("macs<=20M", "uniform"),
        ("macs<=20M", "random"),
    ]
    for s in summaries:
        values = ACCURACIES[(s["method"], s["budget"])]
        assert s["n"] == s["test_n"] == 3 and s["pending"] == 0
        assert s["test_mean"] == pytest.approx(statistics.mean(values))
        assert s["test_std"] == pytest.approx(statistics.stdev(values))
        assert s["search_accuracy"] == pytest.approx(statistics.mean(values) - 0.2)
        assert s["same_arch"] and s["arch"] == _arch(s["method"], BUDGETS[s["budget"]])
        assert s["latency_ms"] is None


def test_summarize_single_seed_and_differing_archs():
    rows = [
        {"method": "x", "budget": "params<=1M", "seed": 1, "arch": {"a": 4}, "macs": 10},
        {"method": "x", "budget": "params<=1M", "seed": 0, "arch": {"a": 2}, "macs": 20},
        {"method": "y", "budget": "params<=1M", "seed": 0, "test_accuracy": 0.5},
    ]
    x, y = summarize(rows)
    assert x["test_mean"] is None and x["pending"] == 2 and x["test_n"] == 0
    assert not x["same_arch"] and x["arch"] == {"a": 2} and x["macs"] == 15
    assert y["test_mean"] == 0.5 and y["test_std"] is None and y["test_n"] == 1


def test_report_tables_figures_and_links(tmp_path):
    path = write_report(_results(), tmp_path)
    assert path == tmp_path / "report.md"
    text = path.read_text()
    assert text.startswith("# Synthetic report\n")
    assert "resnet20" in text and "| retrain_epochs | 3 |" in text
    assert text.index("### Budget `macs<=30M`") < text.index("### Budget `macs<=20M`")
    for budget in BUDGETS:
        section = _budget_section(text, budget)
        reference = statistics.mean(ACCURACIES[("uniform", budget)])
        for method in ("autoslim", "uniform", "random"):
            values = ACCURACIES[(method, budget)]
            line = next(row for row in section.splitlines() if row.startswith(f"| {method} "))
            assert _expected_cell(values) in line
            if method != "uniform":
                diff = 100 * (statistics.mean(values) - reference)
                assert f"| {diff:+.2f} |" in line
                assert ("+" if diff > 0 else "-") in f"{diff:+.2f}"
    # Latency column only when a row has it.
    assert "Latency (ms)" not in text
    for name in ("accuracy_vs_macs.png", "accuracy_vs_params.png", "channels.png"):
        _assert_png(tmp_path / name)
        assert f"]({name})" in text
    assert not (tmp_path / "accuracy_vs_latency.png").exists()
    assert "## Channels per layer" in text
    assert "| layer5.conv | 48 |" in text and "layer1 |" not in text.split("## Channels")[1]
    assert not list(tmp_path.glob("*.tmp"))


def test_report_with_latency(tmp_path):
    text = write_report(_results(with_latency=True), tmp_path).read_text()
    assert "Latency (ms)" in text and "](accuracy_vs_latency.png)" in text
    _assert_png(tmp_path / "accuracy_vs_latency.png")


def test_pending_retraining_shows_dash_and_note(tmp_path):
    results = _results()
    pending = [r for r in results["rows"] if r["method"] == "random" and r["budget"] == "macs<=20M"]
    for row in pending:
        row["test_accuracy"] = None
    results["rows"][0]["test_accuracy"] = None  # autoslim, macs<=20M, seed 0
    text = write_report(results, tmp_path).read_text()
    assert "Retraining is pending for 4 of 18 models" in text
    section = _budget_section(text, "macs<=20M")
    random_line = next(r for r in section.splitlines() if r.startswith("| random "))
    assert random_line.endswith("| — | — |")
    assert _expected_cell(ACCURACIES[("autoslim", "macs<=20M")][1:]) in section
    _assert_png(tmp_path / "accuracy_vs_macs.png")


def test_empty_rows(tmp_path):
    text = write_report({"model": "resnet20", "rows": []}, tmp_path).read_text()
    assert "No results yet" in text
    assert not list(tmp_path.glob("*.png"))


def test_without_matplotlib_report_has_note_and_no_figures(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    text = write_report(_results(), tmp_path).read_text()
    assert NO_MATPLOTLIB_NOTE in text and "pip install 'slimnas[plot]'" in text
    assert ".png)" not in text and not list(tmp_path.glob("*.png"))
    assert _expected_cell(ACCURACIES[("autoslim", "macs<=20M")]) in text


def test_read_results(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results()))
    assert read_results(path)["model"] == "resnet20"
    with pytest.raises(ConfigError, match="missing.json"):
        read_results(tmp_path / "missing.json")
    path.write_text('{"rows": [')
    with pytest.raises(ConfigError, match="results.json is not valid JSON"):
        read_results(path)
    path.write_text("[]")
    with pytest.raises(ConfigError, match="JSON object"):
        read_results(path)


def test_malformed_row_raises(tmp_path):
    with pytest.raises(ConfigError, match="row 0"):
        write_report({"rows": [{"seed": 0}]}, tmp_path)
