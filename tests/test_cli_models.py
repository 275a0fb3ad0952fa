"""Users' models in the CLI: ``model.name = "package.module:callable"`` and ``"timm:<name>"``
run end to end; every bad model is one line naming the key, exit 2, and no run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slimnas.cli import main
from slimnas.config import load_config
from slimnas.configured_model import image_channels
from slimnas.data.prepare import load_training_data
from slimnas.pipeline import load_exported

ROOT = Path(__file__).resolve().parents[1]
FACTORY = "tests.helpers.models"  # importable from the repository root, the working directory

RUN = """
[data]
heldout = 0.2
max_train_images = {images}
max_test_images = 60

[supernet]
epochs = 1
batch_size = 40
warmup_epochs = 0.0

[search]
methods = ["autoslim", "uniform"]
budgets = ["macs<=60%"]
score_images = 40
score_batch = 40

[retrain]
epochs = 1
batch_size = 40
warmup_epochs = 0.0
"""


@pytest.fixture(autouse=True)
def _from_repository_root(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # where a user runs slimnas: the factory module is found from here


def _config(tmp_path: Path, model: str, images: int = 200) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(f"[model]\n{model}\n{RUN.format(images=images)}\n[run]\ndir = '{tmp_path}/run'")
    return path


def _finished(run_dir: Path) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    assert {row["method"] for row in results["rows"]} == {"autoslim", "uniform"}
    assert all(0 <= row["test_accuracy"] <= 1 for row in results["rows"])
    for row in results["rows"]:  # every found arch meets its budget on the exported model
        assert row["macs"] <= 0.6 * results["max"]["macs"], row
    return results


def test_a_factory_model_runs_end_to_end(tmp_path: Path, capsys) -> None:
    model = f'name = "{FACTORY}:make_net"\nkwargs = {{width = 16}}'
    assert main(["run", str(_config(tmp_path, model))]) == 0
    run_dir = tmp_path / "run"
    results = _finished(run_dir)
    saved = json.loads((run_dir / "config.json").read_text())["model"]
    assert saved["kwargs"] == {"width": 16} and saved["num_classes"] == 10
    # The retrained model rebuilds from the run's config through the same factory.
    row = results["rows"][0]
    folder = run_dir / "models" / row["method"] / "macs-le-60pct" / "seed0"
    rebuilt = load_exported(folder)
    assert rebuilt(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert type(rebuilt).__name__ == "SmallNet"


def test_a_timm_model_runs_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    assert main(["run", str(_config(tmp_path, 'name = "timm:resnet10t"', images=120))]) == 0
    results = _finished(tmp_path / "run")
    assert results["max"]["macs"] > 0
    space = json.loads((tmp_path / "run" / "space.json").read_text())
    assert len(space["units"]) >= 5  # the stem, every stage's convs and the shortcuts


BAD_MODELS = {
    "module missing": (f'name = "{FACTORY}_nope:make_net"', "model.name", "no module named"),
    "attribute missing": (f'name = "{FACTORY}:make_nope"', "model.name", "no attribute"),
    "not callable": (f'name = "{FACTORY}:NOT_CALLABLE"', "model.name", "not a function"),
    "factory raises": (f'name = "{FACTORY}:make_raising"', "model.kwargs", "always fails"),
    "bad kwargs": (
        f'name = "{FACTORY}:make_net"\nkwargs = {{depth = 3}}',
        "model.kwargs",
        "depth",
    ),
    "not a module": (f'name = "{FACTORY}:make_not_a_module"', "model.name", "returned a dict"),
    "channels": (
        f'name = "{FACTORY}:make_net"\nkwargs = {{in_channels = 1}}',
        "model.name",
        "takes 1-channel images (its first conv stem.0) but data.source 'builtin' gives "
        "3-channel 32x32",
    ),
    "input size": (
        f'name = "{FACTORY}:make_fixed_size_net"\nkwargs = {{size = 16}}',
        "model.name",
        "does not run on the data",
    ),
    "width_mult not taken": (
        f'name = "{FACTORY}:make_fixed_size_net"\nwidth_mult = 0.5',
        "model.width_mult",
        "takes no width_mult",
    ),
    "classes not taken": (
        f'name = "{FACTORY}:make_net_ten_classes"\nnum_classes = 12',
        "model.num_classes",
        "outputs 10 classes",
    ),
    "timm unknown": ('name = "timm:resnet_nope"', "model.name", "unknown timm model"),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_a_bad_model_is_one_line_and_writes_nothing(case: str, tmp_path: Path, capsys) -> None:
    if case.startswith("timm"):
        pytest.importorskip("timm")
    model, key, words = BAD_MODELS[case]
    assert main(["run", str(_config(tmp_path, model))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err and words in err, err
    assert not (tmp_path / "run").exists()


def test_missing_timm_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    assert main(["run", str(_config(tmp_path, 'name = "timm:resnet10t"'))]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.name" in err and "pip install 'slimnas[timm]'" in err
    assert not (tmp_path / "run").exists()


def test_a_grayscale_folder_feeds_a_one_channel_model(tmp_path: Path, capsys) -> None:
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for label in ("dark", "light"):
        folder = tmp_path / "data" / "train" / label
        folder.mkdir(parents=True)
        for i in range(12):
            base = 60 if label == "dark" else 180
            pixels = (torch.rand(14, 14, generator=generator) * 60 + base).to(torch.uint8)
            Image.fromarray(pixels.numpy(), mode="L").save(folder / f"{i}.png")
    config = tmp_path / "train.toml"
    config.write_text(
        f'[model]\nname = "{FACTORY}:make_net"\nkwargs = {{in_channels = 1, width = 8}}\n'
        f'[data]\nsource = "folder"\nroot = "{tmp_path}/data"\nimage_size = 12\n'
        "[train]\nepochs = 1\nbatch_size = 8\nwarmup_epochs = 0.0\n"
        f'[run]\ndir = "{tmp_path}/run"\n'
    )
    loaded = load_config(config)
    data = load_training_data(loaded.data, channels=image_channels(loaded))
    assert data.train[0].shape[1:] == (1, 12, 12) and len(data.mean) == 1
    assert main(["train", str(config)]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["num_classes"] == 2
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["images"]["train"] == 24
    # A model of three input channels reads the same folder as RGB (the gray value thrice).
    rgb = config.read_text().replace("in_channels = 1, ", "").replace("/run", "/rgb")
    config.write_text(rgb)
    assert main(["train", str(config)]) == 0


def test_a_users_module_is_found_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "my_nets.py").write_text(
        "from torch import nn\n\n"
        "def tiny(num_classes=10, channels=4):\n"
        "    return nn.Sequential(nn.Conv2d(3, channels, 3), nn.BatchNorm2d(channels), "
        "nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))\n"
    )
    script = Path(sys.executable).with_name("slimnas")  # the console script: sys.path[0] is bin/
    command = [str(script)] if script.exists() else [sys.executable, "-P", "-m", "slimnas.cli"]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [*command, "space", "--model", "my_nets:tiny", "--kwargs", "{channels = 16}"],
        cwd=tmp_path,
        env=env | {"OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "searchable units" in result.stdout and "16" in result.stdout
