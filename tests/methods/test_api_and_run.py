"""The Python API and ``slimnas run`` run the same classes: for the same seed and data,
``AutoSlim().fit(...).search(budgets)`` and a one-budget method (TAS) find the archs the pipeline
finds."""

from __future__ import annotations

import json
from pathlib import Path

import slimnas
from slimnas.config import PipelineConfig
from slimnas.data import normalize
from slimnas.data.prepare import load_training_data
from slimnas.models.build import build_model
from slimnas.pipeline import Pipeline

CONFIG = {
    "model": {"name": "resnet20", "width_mult": 0.5},
    "space": {"divisor": 4},
    "data": {"heldout": 0.2, "max_train_images": 200, "max_test_images": 100},
    "supernet": {"epochs": 1, "batch_size": 40, "warmup_epochs": 0.0},
    "search": {
        "methods": ["autoslim", "tas"],
        "budgets": ["macs<=60%", "macs<=40%"],
        "score_images": 40,
        "score_batch": 40,
        "seed": 3,
        "tas": {"arch_lr": 0.05},
    },
    "retrain": {"bn_batches": 2},
}


def fresh_supernet(config: PipelineConfig, data) -> slimnas.Supernet:
    """The model of the config with the initial weights of supernet.seed, traced as the
    pipeline traces it (default grid, depth fixed)."""
    import torch

    torch.manual_seed(config.supernet.seed)
    model, _ = build_model(config.model.name, num_classes=10, width_mult=config.model.width_mult)
    example = normalize(data.train[0][:1], data.mean, data.std)
    space = slimnas.trace(model, example, divisor=config.space.divisor)
    for unit in space.depth_units():
        space = space.fix(unit.name)
    return slimnas.Supernet(model, space)


def test_the_api_finds_the_archs_slimnas_run_finds(tmp_path: Path) -> None:
    config = PipelineConfig.from_dict({**CONFIG, "run": {"dir": str(tmp_path / "run")}})
    Pipeline(config, progress=False).run(("supernet", "search"))
    found = {
        name: [
            r["arch"]
            for r in json.loads((tmp_path / "run" / "search" / f"{name}.json").read_text())
        ]
        for name in ("autoslim", "tas")
    }

    data = load_training_data(config.data)
    search = config.search
    setup = slimnas.Setup(
        data,
        config.supernet,
        seed=search.seed,
        score_images=search.score_images,
        score_batch=search.score_batch,
        calibration_batches=config.retrain.bn_batches,
        progress=False,
    )
    budgets = list(search.budgets)
    autoslim = slimnas.AutoSlim().fit(
        fresh_supernet(config, data), setup.for_folder(tmp_path / "api" / "supernet")
    )
    assert [dict(r.arch) for r in autoslim.search(budgets)] == found["autoslim"]
    tas = slimnas.TAS(arch_lr=0.05).fit(
        fresh_supernet(config, data), setup.for_folder(tmp_path / "api" / "tas")
    )
    assert [dict(r.arch) for r in tas.search(budgets)] == found["tas"]
