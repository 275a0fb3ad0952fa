"""The committed experiment configs (configs/*.toml) still run through ``slimnas run``, each cut
to about a minute with ``--set`` overrides (a few hundred built-in images, one epoch, one seed,
small searches); slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimnas.config import PipelineConfig, load_config
from slimnas.pipeline import Pipeline

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUICK = [
    "data.source=builtin",
    "data.root=none",
    "data.max_train_images=200",
    "data.heldout=0.2",  # 40 held-out images: one batch of 40 for ProxylessNAS's arch steps
    "data.max_test_images=100",
    "supernet.epochs=1",
    "supernet.batch_size=40",
    "supernet.warmup_epochs=0",
    "retrain.epochs=1",
    "retrain.batch_size=40",
    "retrain.warmup_epochs=0",
    "retrain.seeds=0",
    "retrain.teacher=none",
    "search.score_images=40",
    "search.score_batch=40",
    "search.latency_table=none",
    "search.latency_runtime=torch",
    "search.random.samples=4",
    "search.evolution.population=4",
    "search.evolution.generations=2",
    "search.tas.epochs=1",
    "search.tas_width.epochs=1",
    "search.proxyless.epochs=1",
    "search.proxyless.warmup_epochs=1",
    "search.joslim.pool=32",
    "search.joslim.refit_every=2",
    "search.joslim.refresh_images=40",
]
PIPELINE_CONFIGS = sorted(p.name for p in CONFIGS.glob("*.toml") if "[search]" in p.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", PIPELINE_CONFIGS)
def test_a_committed_config_runs_end_to_end_when_cut_short(name: str, tmp_path: Path) -> None:
    if "joslim" in name:
        pytest.importorskip("botorch")
    text = (CONFIGS / name).read_text()
    budgets = ["search.budgets=macs<=90%"] if "latency_ms" in text else []
    overrides = [*QUICK, *budgets, f"run.dir={tmp_path / 'run'}"]
    config = load_config(CONFIGS / name, overrides, PipelineConfig)
    Pipeline(config, progress=False).run()
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {r["method"] for r in results["rows"]} == set(config.search.methods)
    assert all(r["test_accuracy"] is not None for r in results["rows"])
