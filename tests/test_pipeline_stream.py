"""`slimnas run` on an ImageFolder written to disk (PNGs of several sizes, a class of grayscale
images, a corrupt file), streamed from disk (``data.stream``) and decoded into memory: the corrupt
file is a one-line error (exit 2, nothing written) in both modes; without it, both modes search
the same archs with the same seed.

The two modes augment differently by design (padded random crops of the stored images in
memory, random-resized crops of the originals when streaming), so the comparison turns
augmentation off and gives the stream the in-memory path's evaluation crop (``data.resize =
image_size``): then every batch holds the same pixels and the runs must agree exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimnas.cli import main
from tests.helpers.image_folder import add_corrupt_file, make_image_folder

SIZE = 16


def config_text(root: Path, run_dir: Path, stream: bool) -> str:
    data = f'source = "folder"\nroot = "{root}"\nimage_size = {SIZE}\nheldout = 0.25\n'
    data += "augment = false\n"
    if stream:
        data += f"stream = true\nworkers = 2\nresize = {SIZE}\n"
    return f"""
[model]
name = "resnet20"
width_mult = 0.5

[data]
{data}
[supernet]
epochs = 1
batch_size = 40
warmup_epochs = 0.0

[search]
methods = ["autoslim", "random"]
budgets = ["macs<=60%"]
score_images = 60
score_batch = 30
random_samples = 3

[retrain]
epochs = 1
batch_size = 40
warmup_epochs = 0.0
seeds = [0]

[run]
dir = "{run_dir}"
"""


def run(tmp_path: Path, root: Path, name: str, stream: bool) -> tuple[int, Path]:
    run_dir = tmp_path / name
    config = tmp_path / f"{name}.toml"
    config.write_text(config_text(root, run_dir, stream))
    return main(["run", str(config)]), run_dir


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """4 classes × 50 training images (one class grayscale) and 4 × 8 test images."""
    return make_image_folder(tmp_path_factory.mktemp("folder"), classes=4, per_class=50, val=8)


def test_a_corrupt_file_is_one_line_exit_2_and_nothing_written(tmp_path, capsys) -> None:
    root = make_image_folder(tmp_path / "images", classes=2, per_class=4)
    bad = add_corrupt_file(root)
    for stream in (False, True):
        code, run_dir = run(tmp_path, root, f"run-{stream}", stream)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert str(bad) in err and "remove or replace it" in err
        assert not run_dir.exists()


def test_streamed_and_in_memory_runs_search_the_same_archs(tmp_path, image_root) -> None:
    found = {}
    for stream in (False, True):
        code, run_dir = run(tmp_path, image_root, f"run-{stream}", stream)
        assert code == 0
        rows = json.loads((run_dir / "results.json").read_text())["rows"]
        found[stream] = {(r["method"], r["budget"]): (r["arch"], r["test_accuracy"]) for r in rows}
        config = json.loads((run_dir / "config.json").read_text())
        assert config["data"]["stream"] is stream
    assert found[True] == found[False]
    assert len(found[True]) == 2
    assert all(0 <= accuracy <= 1 for _, accuracy in found[True].values())
