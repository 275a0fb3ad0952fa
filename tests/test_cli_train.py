"""`slimnas train`: end to end on the built-in data (plain and supernet), resume, bad input.

Runs are tiny: ResNet-20 at width 0.25, batches of 32, a few steps (``train.max_steps``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from slimnas.cli import main
from slimnas.config import load_config
from slimnas.train import load_latest

TINY = """
[model]
name = "resnet20"
width_mult = 0.25

[data]
heldout = 0.02

[train]
epochs = 2
max_steps = 3
batch_size = 32
bn_batches = 2
device = "cpu"
"""


def tiny_config(tmp_path: Path, name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(TINY)
    return path


def train(config: Path, run_dir: Path, *flags: str) -> tuple[int, str, str]:
    """``slimnas train`` in-process; returns (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["train", str(config), "--set", f"run.dir={run_dir}", *flags])
    return status, out.getvalue(), err.getvalue()


def metric_steps(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


def snapshot(run_dir: Path) -> dict[str, str]:
    """Every file under ``run_dir`` with the hash of its bytes."""
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """One finished 3-step run of a plain ResNet-20: (config, run dir, stdout)."""
    tmp = tmp_path_factory.mktemp("plain")
    config = tiny_config(tmp)
    status, out, err = train(config, tmp / "run")
    assert status == 0, err
    return config, tmp / "run", out


def test_plain_run_writes_config_metrics_checkpoint_and_results(plain_run) -> None:
    config, run_dir, out = plain_run
    saved = json.loads((run_dir / "config.json").read_text())
    expected = load_config(config, [f"run.dir={run_dir}"]).to_dict()
    expected["model"]["num_classes"] = 10  # resolved from the data
    assert saved == expected
    assert load_latest(run_dir).state["config"] == saved  # the checkpoint records it too
    assert metric_steps(run_dir) == [1, 2, 3]
    assert (run_dir / "ckpt-00000003").is_dir()

    results = json.loads((run_dir / "results.json").read_text())
    assert results["step"] == 3 and results["finished"] is False and not results["supernet"]
    assert results["images"] == {"train": 4900, "heldout": 100, "test": 1000}
    assert [(e["split"], e["arch"]) for e in results["evaluations"]] == [
        ("heldout", "model"),
        ("test", "model"),
    ]
    for evaluation in results["evaluations"]:
        assert 0.0 <= evaluation["accuracy"] <= 1.0 and evaluation["loss"] > 0
        assert evaluation["params"] > 0
    lines = out.splitlines()
    assert lines[0].startswith("training resnet20 model on builtin")
    assert any(line.startswith("heldout  model") and "100 images" in line for line in lines)
    assert any(line.startswith("test     model") and "1000 images" in line for line in lines)


def test_supernet_run_evaluates_max_and_min_archs(tmp_path) -> None:
    config = tiny_config(tmp_path)
    run_dir = tmp_path / "super"
    status, out, err = train(
        config, run_dir, "--set", "train.supernet=true", "--set", "train.max_steps=2"
    )
    assert status == 0, err
    assert metric_steps(run_dir) == [1, 2]
    with open(run_dir / "metrics.csv", newline="") as handle:
        columns = csv.DictReader(handle).fieldnames
    assert {"loss_max", "loss_min", "acc_max"} <= set(columns)  # the sandwich step's metrics
    results = json.loads((run_dir / "results.json").read_text())
    assert results["supernet"] is True
    by_arch = {(e["arch"], e["split"]): e for e in results["evaluations"]}
    assert set(by_arch) == {(a, s) for a in ("max", "min") for s in ("heldout", "test")}
    assert by_arch["min", "test"]["macs"] < by_arch["max", "test"]["macs"]
    assert by_arch["min", "test"]["params"] < by_arch["max", "test"]["params"]
    assert "supernet (sandwich, n=4)" in out and "min " in out


def test_resume_continues_the_step_count(plain_run, tmp_path) -> None:
    config, original, _ = plain_run
    run_dir = tmp_path / "run"
    shutil.copytree(original, run_dir)
    status, out, err = train(config, run_dir, "--resume", "--set", "train.max_steps=5")
    assert status == 0, err
    assert "resuming at step 3" in out
    assert metric_steps(run_dir) == [1, 2, 3, 4, 5]
    assert (run_dir / "ckpt-00000005").is_dir()
    assert json.loads((run_dir / "results.json").read_text())["step"] == 5
    assert json.loads((run_dir / "config.json").read_text())["train"]["max_steps"] == 5


def test_fresh_run_in_a_used_run_dir_is_refused(plain_run) -> None:
    config, run_dir, _ = plain_run
    before = snapshot(run_dir)
    status, out, err = train(config, run_dir)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "already holds checkpoints" in err and "--resume" in err
    assert snapshot(run_dir) == before


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--set", "train.lr=fast"], "train.lr must be a positive number, got 'fast'"),
        (["--set", "train.lrr=0.1"], "unknown key train.lrr"),
        (["--set", "model.name=resnet7"], "model.name must be one of"),
        (["--set", "data.source=cifar10"], "data.root must be set"),
        (["--set", "model.width_mult=0.5"], "--resume: model.width_mult is 0.5 but the run"),
        (["--set", "data.heldout=0.05"], "--resume: data.heldout is 0.05 but the run"),
    ],
)
def test_bad_input_exits_2_and_leaves_the_run_dir_alone(plain_run, flags, expected) -> None:
    config, run_dir, _ = plain_run
    before = snapshot(run_dir)
    status, out, err = train(config, run_dir, "--resume", *flags)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert snapshot(run_dir) == before


@pytest.mark.parametrize(
    ("text", "flags", "expected"),
    [
        (None, [], "does not exist"),
        ("[train\nlr = 0.1\n", [], "is not valid TOML"),
        ("[train]\nlr = 'fast'\n", [], "train.lr must be a positive number, got 'fast'"),
        (TINY, ["--set", "train.batch_size=100000"], "train.batch_size 100000 is more than"),
        (TINY, ["--set", "data.source=cifar10", "--set", "data.root=/nonexistent"], "no cifar10"),
    ],
)
def test_bad_fresh_run_writes_nothing(tmp_path, text, flags, expected) -> None:
    config = tmp_path / "bad.toml"
    if text is not None:
        config.write_text(text)
    status, out, err = train(config, tmp_path / "never", *flags)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err
    assert not (tmp_path / "never").exists()


def test_image_folder_data_with_a_val_split(tmp_path) -> None:
    image = pytest.importorskip("PIL.Image", reason="ImageFolder decoding needs Pillow")

    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 4)):
        for name in ("cat", "dog", "eel"):
            (tmp_path / "tree" / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
                image.fromarray(pixels).save(tmp_path / "tree" / split / name / f"{i}.png")
    config = tmp_path / "folder.toml"
    config.write_text(
        f'[model]\nwidth_mult = 0.25\n[data]\nsource = "folder"\nroot = "{tmp_path / "tree"}"\n'
        "image_size = 16\nheldout = 0.25\n[train]\nbatch_size = 9\nmax_steps = 1\n"
    )
    status, out, err = train(config, tmp_path / "run")
    assert status == 0, err
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["images"] == {"train": 27, "heldout": 9, "test": 12}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["num_classes"] == 3
    (tmp_path / "tree" / "val" / "eel").rename(tmp_path / "tree" / "val" / "emu")
    status, _, err = train(config, tmp_path / "other")
    assert status == 2 and "different class folders" in err
