"""The ImageNet recipes (configs/imagenet/*.toml) load, their budgets are the papers' and lie
inside each model's space at 224 px, and each one runs end to end through ``slimnas run`` on a
tiny ImageNet-layout folder of JPEGs, streamed from disk.

The runs change the recipes only by ``--set`` overrides that shrink them: the data root, smaller
images, one epoch, tiny batches, one seed, decoding in the main process, no mixed precision (no
CUDA here; channels-last stays on), and relative budgets, since the papers' absolute MACs
budgets at 224 px mean nothing for a 32 px image (all of them met, or none). One recipe runs in
the default suite; the others are slow (their runtimes: docs/imagenet.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from slimnas.cli import main
from slimnas.config import PipelineConfig, load_config
from slimnas.cost import macs
from slimnas.cost.budget import Budget
from slimnas.pipeline import Pipeline
from tests.helpers.imagenet_folder import make_imagenet_folder

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "imagenet"
RECIPES = sorted(p.name for p in CONFIGS.glob("*.toml"))
SIZE = 32
BUDGET = "macs<=70%"

# The papers' budgets (MACs; the papers call them FLOPs): AutoSlim's tables, TAS's reductions.
PAPER_BUDGETS = {
    "autoslim_mobilenetv2.toml": ["macs<=505M", "macs<=305M", "macs<=207M"],
    "autoslim_resnet50.toml": ["macs<=3G", "macs<=2G", "macs<=1G", "macs<=570M"],
    "tas_resnet18.toml": ["macs<=66.7%"],
    "tas_resnet50.toml": ["macs<=55.9%"],
    "proxyless.toml": ["latency_ms<=65%"],
}

QUICK = [
    f"data.image_size={SIZE}",
    "data.workers=0",
    "data.heldout=0.25",  # 3 of the 12 images of each class: 12 held out
    "supernet.epochs=1",
    "supernet.batch_size=8",
    "supernet.warmup_epochs=0",
    "supernet.checkpoint_every=none",
    "search.score_images=8",
    "search.score_batch=8",
    "search.report_images=4",
    "retrain.epochs=1",
    "retrain.batch_size=8",
    "retrain.warmup_epochs=0",
    "retrain.checkpoint_every=none",
    "retrain.amp=false",
    "retrain.seeds=0",
]
PER_RECIPE = {
    "autoslim_mobilenetv2.toml": ["space.steps=4"],  # fewer, larger greedy steps
    "autoslim_resnet50.toml": ["space.steps=4"],
    "tas_resnet18.toml": ["search.tas.epochs=1", "retrain.teacher=none"],
    "tas_resnet50.toml": ["search.tas.epochs=1", "retrain.teacher=none"],
    "proxyless.toml": [
        "search.proxyless.warmup_epochs=1",
        "search.proxyless.epochs=1",
        "search.proxyless.arch_every=1",  # an architecture step within the few steps
        "search.latency_table=none",  # measured on a GPU at 224 px: MACs instead
        "search.latency_device=cpu",
        "search.latency_runtime=torch",
        "search.latency_batch=1",
    ],
}
DEFAULT_SUITE = "tas_resnet18.toml"


def test_every_recipe_loads_streams_imagenet_at_224_and_keeps_the_papers_budgets() -> None:
    assert set(RECIPES) == set(PAPER_BUDGETS)
    for name in RECIPES:
        config = load_config(CONFIGS / name, (), PipelineConfig)
        data = config.data
        assert (data.source, data.root, data.image_size, data.stream) == (
            "folder",
            "data/imagenet",
            224,
            True,
        ), name
        assert abs(data.heldout * 1_281_167 - 50_000) < 100, name  # the papers' 50k split
        assert list(config.search.budgets) == PAPER_BUDGETS[name], name
        assert config.retrain.label_smoothing > 0 or config.retrain.distill, name
        assert config.retrain.warmup_epochs > 0 and config.retrain.channels_last, name
        text = (CONFIGS / name).read_text()
        assert "Expected" in text and "differs from the paper" in text, name


@pytest.mark.parametrize("name", ["autoslim_mobilenetv2.toml", "autoslim_resnet50.toml"])
def test_the_absolute_budgets_lie_inside_the_space_at_224(name: str) -> None:
    """Each of AutoSlim's MACs budgets is below the max arch and above the min arch of the
    recipe's space at 224 px, so that every budget is a real search (not met by the max arch,
    not out of reach)."""
    config = load_config(CONFIGS / name, (), PipelineConfig)
    model = Pipeline._model(config, 0)
    space = Pipeline._space(config, model, torch.randn(1, 3, 224, 224))
    largest, smallest = macs(space, space.max_arch()), macs(space, space.min_arch())
    for text in config.search.budgets:
        limit = Budget.parse(text, space).limit
        assert smallest < limit < largest, (text, smallest, largest)


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory) -> Path:
    return make_imagenet_folder(tmp_path_factory.mktemp("imagenet"))


@pytest.mark.parametrize(
    "name",
    [n if n == DEFAULT_SUITE else pytest.param(n, marks=pytest.mark.slow) for n in RECIPES],
)
def test_a_recipe_runs_end_to_end_on_a_tiny_imagenet_folder(
    name: str, imagenet_root: Path, tmp_path: Path, capsys
) -> None:
    run_dir = tmp_path / "run"
    overrides = [
        f"data.root={imagenet_root}",
        *QUICK,
        *PER_RECIPE[name],
        f"search.budgets={BUDGET}",
        f"run.dir={run_dir}",
    ]
    code = main(["run", str(CONFIGS / name), *(a for o in overrides for a in ("--set", o))])
    assert code == 0, capsys.readouterr().err[-3000:]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data"]["stream"] and config["data"]["image_size"] == SIZE
    assert config["retrain"]["channels_last"]
    recipe = load_config(CONFIGS / name, (), PipelineConfig)
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert {r["method"] for r in rows} == set(recipe.search.methods)
    space = json.loads((run_dir / "space.json").read_text())
    assert space  # the traced space was written
    for row in rows:
        assert row["budget"] == BUDGET
        assert row["test_accuracy"] is not None and 0.0 <= row["test_accuracy"] <= 1.0
    # The found archs meet the relative budget: MACs of the retrained plain models.
    full = _max_arch_macs(run_dir)
    assert all(r["macs"] <= 0.7 * full * (1 + 1e-9) for r in rows), [r["macs"] for r in rows]
    assert all(r["macs"] < full for r in rows)


def _max_arch_macs(run_dir: Path) -> float:
    from slimnas.space.space import Space

    space = Space.from_json((run_dir / "space.json").read_text())
    return macs(space, space.max_arch())
