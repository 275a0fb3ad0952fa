"""TAS inside `slimnas run`: a search per budget, resumable, retrained with KD, in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimnas.pipeline import Pipeline, budget_slug
from tests.test_pipeline import tiny_config

CHANGES = {
    "space__depth": True,
    "search__methods": ["tas", "tas_width", "uniform"],
    "search__budgets": ["macs<=50%"],
    "search__tas_arch_lr": 0.05,
    "retrain__seeds": [0],
    "retrain__distill": True,
}


@pytest.fixture(scope="module")
def tas_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("tas") / "run"
    Pipeline(tiny_config(run_dir, **CHANGES), progress=False).run()
    return run_dir


def test_tas_searches_each_budget_and_its_archs_meet_it(tas_run: Path) -> None:
    results = json.loads((tas_run / "results.json").read_text())
    rows = {r["method"]: r for r in results["rows"]}
    assert set(rows) == {"tas", "tas_width", "uniform"}
    for method in ("tas", "tas_width"):
        folder = tas_run / "search" / method / budget_slug("macs<=50%")
        assert (folder / "metrics.csv").exists() and list(folder.glob("ckpt-*"))
        found = json.loads((folder / "result.json").read_text())
        assert found["costs"]["macs"] <= 0.5 * results["max"]["macs"]
        assert rows[method]["macs"] == found["costs"]["macs"]  # counted on the retrained model
        assert 0 <= rows[method]["test_accuracy"] <= 1
        assert 0 <= found["accuracy"] <= 1  # scored with the search's own weights
    depths = {"layer1", "layer2", "layer3"}
    units = {
        method: set(
            json.loads((tas_run / "search" / f"{method}.json").read_text())[0]["info"][
                "probabilities"
            ]
        )
        for method in ("tas", "tas_width")
    }
    assert depths <= units["tas"] and not depths & units["tas_width"]
    assert "tas_width" in (tas_run / "report.md").read_text()
