"""ProxylessNAS inside `slimnas run`: an op-only space, a search per budget with a real latency
table, the fixed-op reference, measured latency in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimnas.pipeline import Pipeline, budget_slug
from tests.test_pipeline import tiny_config

CHANGES = {
    "model__name": "proxyless_cifar_small",
    "model__width_mult": 0.25,
    "space__channels": False,
    "search__methods": ["proxyless", "fixed"],
    "search__budgets": ["macs<=90%"],
    "search__proxyless_warmup_epochs": 1,
    "search__proxyless_arch_every": 1,
    "search__proxyless_arch_lr": 0.05,
    "retrain__seeds": [0],
}


@pytest.fixture(scope="module")
def proxyless_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("proxyless") / "run"
    Pipeline(tiny_config(run_dir, **CHANGES), progress=False).run()
    return run_dir


def test_proxyless_searches_each_budget_over_op_units_only(proxyless_run: Path) -> None:
    results = json.loads((proxyless_run / "results.json").read_text())
    space = json.loads((proxyless_run / "space.json").read_text())
    searchable = [u for u in space["units"] if len(u["choices"]) > 1]
    assert searchable and {u["kind"] for u in searchable} == {"op"}
    rows = [r for r in results["rows"] if r["method"] == "proxyless"]
    assert [r["budget"] for r in rows] == ["macs<=90%"]
    for budget in ("macs<=90%",):
        folder = proxyless_run / "search" / "proxyless" / budget_slug(budget)
        found = json.loads((folder / "result.json").read_text())
        limit = float(budget[6:-1]) / 100 * results["max"]["macs"]
        assert found["costs"]["macs"] <= limit
        assert found["info"]["arch_steps"] > 0
        assert (folder.parent / "warmup" / "final" / "supernet.json").exists()  # shared warm-up
        assert set(found["info"]["probabilities"]) == {u["name"] for u in searchable}
        trace = results["proxyless"][f"proxyless {budget}"]
        assert 0 < trace[-1]["entropy"] <= 1 and "cost_argmax" in trace[-1]
    report = (proxyless_run / "report.md").read_text()
    assert "## Operators per block" in report and "](proxyless_search.png)" in report
    assert (proxyless_run / "proxyless_search.png").read_bytes()[:4] == b"\x89PNG"
    ops = report.split("## Operators per block")[1]
    assert all(u["name"] in ops for u in searchable)
    # Ops only: every uniform width is the max arch, so there is no uniform path to score.
    scores = json.loads((proxyless_run / "supernet" / "final" / "scores.json").read_text())
    assert scores["uniform_path"] == [] and "rises with width" not in report


def test_fixed_reference_takes_its_op_on_every_unit(proxyless_run: Path) -> None:
    (fixed,) = json.loads((proxyless_run / "search" / "fixed.json").read_text())
    assert set(fixed["arch"].values()) == {"k3e6"} and fixed["budget"] == "macs<=90%"
    results = json.loads((proxyless_run / "results.json").read_text())
    (row,) = [r for r in results["rows"] if r["method"] == "fixed"]
    assert row["macs"] == fixed["costs"]["macs"] and 0 <= row["test_accuracy"] <= 1


def test_an_unknown_fixed_op_is_refused_before_the_run(tmp_path: Path) -> None:
    from slimnas.errors import ConfigError

    config = tiny_config(tmp_path / "run", **{**CHANGES, "search__fixed_op": "k9e6"})
    with pytest.raises(ConfigError, match="k9e6"):
        Pipeline(config, progress=False).run()
    assert not (tmp_path / "run" / "search").exists()
