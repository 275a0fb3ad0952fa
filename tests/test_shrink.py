"""Shrinking a trained model with `slimnas run` (issue 19): ``model.weights`` as the supernet's
max arch, importance-ranked channels, no supernet training (``supernet.epochs = 0``), and the
magnitude and Torch-Pruning baselines in the same run, fine-tuned alike."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from slimnas.cli import main
from slimnas.config import PipelineConfig
from slimnas.cost.measured import module_macs
from slimnas.io import load_tensors, save_tensors
from slimnas.models.build import build_model
from slimnas.pipeline import Pipeline, load_exported
from slimnas.pruning.torch_pruning import prune_with_torch_pruning
from slimnas.ranking import channel_importance, permutable_units
from slimnas.supernet import Supernet

HAS_TP = True
try:
    import torch_pruning  # noqa: F401
except ImportError:
    HAS_TP = False

METHODS = ["autoslim", "uniform", "magnitude"] + (["torch_pruning"] if HAS_TP else [])


def _trained_weights(path: Path, seed: int = 3) -> Path:
    """A ResNet-20 whose BatchNorms are not at their initial values (so that every channel can
    be told apart, as in a trained model), saved as safetensors."""
    torch.manual_seed(seed)
    model, _ = build_model("resnet20", num_classes=10)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.2, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    save_tensors(model.state_dict(), path)
    return path


def _config(tmp_path: Path, weights: Path, **changes) -> PipelineConfig:
    tables = {
        "model": {"name": "resnet20", "weights": str(weights)},
        "data": {"heldout": 0.2, "max_train_images": 240, "max_test_images": 80},
        # Every multiple of 8 is a choice: Torch-Pruning's widths are archs as they are.
        "space": {"divisor": 8, "steps": 8},
        "supernet": {"epochs": 0, "batch_size": 40},
        "search": {
            "methods": METHODS,
            "budgets": ["macs<=55%"],
            "score_images": 24,
            "report_images": 24,
            "score_batch": 24,
            "bn_batches": 1,
            "torch_pruning": {"steps": 100},
        },
        "retrain": {
            "epochs": 1,
            "batch_size": 40,
            "lr": 0.01,
            "warmup_epochs": 0.0,
            "init": "inherit",
            "distill": True,
            "bn_batches": 1,
        },
        "run": {"dir": str(tmp_path / "run")},
    }
    for key, value in changes.items():
        section, name = key.split("__")
        tables[section][name] = value
    return PipelineConfig.from_dict(tables)


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shrink")
    weights = _trained_weights(tmp / "trained.safetensors")
    pipeline = Pipeline(_config(tmp, weights), progress=False)
    pipeline.run()
    return pipeline, weights


def _original(weights: Path) -> torch.nn.Module:
    model, _ = build_model("resnet20", num_classes=10)
    model.load_state_dict(load_tensors(weights))
    return model.eval()


def test_ranked_supernet_computes_the_trained_function(shrunk) -> None:
    pipeline, weights = shrunk
    supernet = pipeline.stage_supernet()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        ranked = supernet.export(supernet.max_arch()).eval()(x)
        original = _original(weights)(x)
    assert (ranked - original).abs().max() <= 1e-5
    # ... and ranked: every permutable unit's L1 importance is now non-increasing.
    scores = channel_importance(supernet.model, supernet.space, "l1")
    units, _ = permutable_units(supernet.space)
    assert units
    for unit in units:
        score = scores[unit.name]
        assert bool((score[:-1] >= score[1:] - 1e-6).all()), unit.name


def test_every_method_meets_the_budget_and_is_fine_tuned_alike(shrunk) -> None:
    pipeline, weights = shrunk
    run = pipeline.run_dir
    results = json.loads((run / "results.json").read_text())
    rows = results["rows"]
    assert {r["method"] for r in rows} == set(METHODS)
    full = module_macs(_original(weights), torch.zeros(1, 3, 32, 32))
    for row in rows:
        exported = load_exported(run / "models" / row["method"] / "macs-le-55pct" / "seed0")
        assert module_macs(exported, torch.zeros(1, 3, 32, 32)) <= 0.55 * full
        assert row["test_accuracy"] is not None
    compute = results["compute"]["methods"]
    assert {m: c["supernet_passes"] for m, c in compute.items()} == {m: 0 for m in METHODS}
    assert len({c["finetune_passes"] for c in compute.values()}) == 1
    train_images = len(pipeline.prepare().data.train[1])  # 240 less about 20 % held out
    assert 180 <= train_images <= 200
    assert compute["uniform"]["finetune_passes"] == train_images  # 1 epoch
    report = (run / "report.md").read_text()
    assert "## Compute" in report and "| magnitude | 0 |" in report


@pytest.mark.skipif(not HAS_TP, reason="torch-pruning is not installed")
def test_torch_pruning_row_exports_torch_prunings_own_model(shrunk) -> None:
    pipeline, _ = shrunk
    method = pipeline.method("torch_pruning")
    (result,) = pipeline.stage_search()["torch_pruning"]
    assert result.info["lowered"] == {}
    supernet = pipeline.stage_supernet()
    original = supernet.export(supernet.max_arch()).eval()
    x = torch.randn(4, 3, 32, 32)
    pruned = prune_with_torch_pruning(
        original, x, 0.55, iterative_steps=100, round_to=8, max_pruning_ratio=0.5, progress=False
    )
    ours = method.weights(result.budget).export(result.arch).eval()
    with torch.no_grad():
        assert (ours(x) - pruned.model.eval()(x)).abs().max() <= 1e-5
    assert module_macs(ours, x[:1]) == pruned.macs


def test_resumed_run_reuses_every_search(shrunk, tmp_path) -> None:
    pipeline, _ = shrunk
    before = json.loads((pipeline.run_dir / "results.json").read_text())
    again = Pipeline(pipeline.config, resume=True, progress=False)
    again.run()
    after = json.loads((pipeline.run_dir / "results.json").read_text())
    assert [r["arch"] for r in after["rows"]] == [r["arch"] for r in before["rows"]]
    accuracies = [r["test_accuracy"] for r in before["rows"]]
    assert [r["test_accuracy"] for r in after["rows"]] == accuracies
    if HAS_TP:  # rebuilt from search/torch_pruning.kept.json, not pruned again
        model = again.export_inherited(
            Pipeline(pipeline.config, resume=True).stage_search()["torch_pruning"][0].arch,
            "torch_pruning",
            "macs<=55%",
        )
        assert module_macs(model, torch.zeros(1, 3, 32, 32)) <= 0.55 * module_macs(
            pipeline.stage_supernet().export(), torch.zeros(1, 3, 32, 32)
        )


# ----------------------------------------------------------------------------- bad input
def _write(tmp_path: Path, tables: dict) -> Path:
    lines = []
    for section, values in tables.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = tmp_path / "c.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run_cli(tmp_path: Path, capsys, **model) -> tuple[int, str]:
    config = _write(
        tmp_path,
        {
            "model": {"name": "resnet20", **model},
            "data": {"heldout": 0.2, "max_train_images": 100},
            "supernet": {"epochs": 0, "batch_size": 20},
            "retrain": {"batch_size": 20},
            "search": {"methods": ["uniform", "torch_pruning"], "budgets": ["macs<=50%"]},
            "run": {"dir": str(tmp_path / "run")},
        },
    )
    code = main(["run", str(config)])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def test_weights_of_another_model_are_refused(tmp_path: Path, capsys) -> None:
    other, _ = build_model("resnet20", num_classes=10, width_mult=0.5)
    save_tensors(other.state_dict(), tmp_path / "half.safetensors")
    code, line = _run_cli(tmp_path, capsys, weights=str(tmp_path / "half.safetensors"))
    assert code == 2 and "half.safetensors do not fit" in line and "has shape (8,)" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, content", [("bad.safetensors", b"\x00garbage"), ("m.pt", b"x")])
def test_corrupt_or_pickle_weights_are_refused(tmp_path: Path, capsys, name, content) -> None:
    (tmp_path / name).write_bytes(content)
    code, line = _run_cli(tmp_path, capsys, weights=str(tmp_path / name))
    assert code == 2 and name in line
    assert not (tmp_path / "run").exists()


def test_unknown_criterion_is_refused(tmp_path: Path, capsys) -> None:
    weights = _trained_weights(tmp_path / "w.safetensors")
    code, line = _run_cli(tmp_path, capsys, weights=str(weights), rank="entropy")
    assert code == 2 and "model.rank" in line
    assert not (tmp_path / "run").exists()


def test_missing_torch_pruning_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # `import torch_pruning` fails
    weights = _trained_weights(tmp_path / "w.safetensors")
    code, line = _run_cli(tmp_path, capsys, weights=str(weights))
    assert code == 2 and "torch-pruning" in line
    assert not (tmp_path / "run").exists()


def test_zero_supernet_epochs_need_weights(tmp_path: Path, capsys) -> None:
    code, line = _run_cli(tmp_path, capsys)
    assert code == 2 and "model.weights" in line


def test_readme_prune_snippet_runs(tmp_path: Path) -> None:
    """README "Prune a model you have trained", line for line (a tiny setup and trace grid)."""
    import slimnas
    from slimnas.methods import AutoSlim
    from tests.helpers.search import tiny_setup

    weights = _trained_weights(tmp_path / "model.safetensors")
    setup = tiny_setup(tmp_path / "autoslim")
    model = slimnas.load_weights(slimnas.models.resnet20(), str(weights))
    reference = _original(weights)
    x = torch.randn(2, 3, 32, 32)
    supernet = slimnas.Supernet(model, slimnas.trace(model, x[:1], divisor=8, steps=2))
    supernet.rank_channels("l1")
    (found,) = AutoSlim().attach(supernet, setup).search(["macs<=50%"])
    small = supernet.export(found.arch)
    full = module_macs(reference, x[:1])
    assert module_macs(small, x[:1]) <= 0.5 * full
    supernet.eval()
    with torch.no_grad():  # ranked, the max arch is still the trained model
        assert (supernet.export(supernet.max_arch()).eval()(x) - reference(x)).abs().max() < 1e-5


# ------------------------------------------------------ models nobody trained here (torchvision)
def _image_folder(root: Path, size: int = 64, per_class: int = 16, classes: int = 3) -> Path:
    """A small ImageFolder of PNGs: ``train/<class>/`` and ``val/<class>/`` (the test split)."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", per_class), ("val", 4)):
        for label in range(classes):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = torch.randint(0, 256, (size, size, 3), generator=generator)
                pixels[..., label] = pixels[..., label] // 2 + 128  # a class-coloured tint
                Image.fromarray(pixels.to(torch.uint8).numpy()).save(folder / f"{i}.png")
    return root


@pytest.mark.slow  # about 30 s each on an idle 2-core machine
@pytest.mark.parametrize(
    "name, space",
    [
        ("tv:resnet18", {"divisor": 64, "steps": 8}),
        ("tv:mobilenet_v2", {"divisor": 16, "steps": 4}),
    ],
)
def test_torchvision_models_shrink_end_to_end(tmp_path: Path, name: str, space: dict) -> None:
    pytest.importorskip("torchvision")
    pytest.importorskip("PIL")
    model, _ = build_model(name, num_classes=3)
    model.eval()
    weights = tmp_path / "w.safetensors"
    save_tensors(model.state_dict(), weights)
    config = PipelineConfig.from_dict(
        {
            "model": {"name": name, "weights": str(weights), "num_classes": 3},
            "data": {
                "source": "folder",
                "root": str(_image_folder(tmp_path / "images")),
                "image_size": 64,
                "heldout": 0.25,
                "augment": False,
            },
            "space": space,
            "supernet": {"epochs": 0, "batch_size": 12},
            "search": {
                "methods": METHODS,
                "budgets": ["macs<=70%"],
                "score_images": 6,
                "report_images": 6,
                "score_batch": 6,
                "torch_pruning": {"steps": 60},
            },
            "retrain": {
                "epochs": 1,
                "batch_size": 12,
                "lr": 0.001,
                "warmup_epochs": 0.0,
                "init": "inherit",
                "distill": True,
                "bn_batches": 1,
            },
            "run": {"dir": str(tmp_path / "run")},
        }
    )
    pipeline = Pipeline(config, progress=False)
    pipeline.run()
    x = torch.randn(2, 3, 64, 64)
    supernet = pipeline.stage_supernet()
    with torch.no_grad():  # ranking kept the function
        ranked = supernet.export(supernet.max_arch()).eval()(x)
        assert (ranked - model(x)).abs().max() <= 1e-4 * max(1.0, model(x).abs().max().item())
    results = json.loads((pipeline.run_dir / "results.json").read_text())
    full = module_macs(model, x[:1])
    missing = results.get("missing", {})
    for method in METHODS:
        rows = [r for r in results["rows"] if r["method"] == method]
        if not rows:  # only a baseline that could not prune this model, and the report says why
            assert method == "torch_pruning" and missing.get(method)
            assert "## Missing rows" in (pipeline.run_dir / "report.md").read_text()
            continue
        (row,) = rows
        assert row["macs"] <= 0.7 * full and row["test_accuracy"] is not None
        print(name, method, f"{row['macs'] / full:.1%} MACs", row.get("arch") and "")


def test_sandwich_fine_tune_starts_from_the_ranked_trained_weights(tmp_path: Path) -> None:
    weights = _trained_weights(tmp_path / "w.safetensors")
    config = _config(
        tmp_path,
        weights,
        supernet__epochs=1,
        supernet__lr=1e-9,  # so that the weights stay where they started
        supernet__weight_decay=0.0,
        search__methods=["uniform"],
        search__budgets=["macs<=55%"],
    )
    pipeline = Pipeline(config, progress=False)
    supernet = pipeline.stage_supernet()
    assert (pipeline.run_dir / "supernet" / "metrics.csv").exists()  # it did train
    reference = Supernet(_original(weights), pipeline.prepare().space)
    reference.rank_channels("l1")  # the trained weights, ranked by hand
    for (name, trained), (_, start) in zip(
        supernet.model.named_parameters(), reference.model.named_parameters()
    ):
        assert (trained - start).abs().max() < 1e-6, name
