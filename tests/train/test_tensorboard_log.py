"""Tests for the optional TensorBoard scalars of train/metrics_log.py, written by a real Trainer
on tiny real training: they equal metrics.csv step by step, also across a resume after a kill."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from tiny_training import tiny_loader, tiny_model

from slimnas.errors import ConfigError
from slimnas.train import Trainer, checkpoint_dirs, read_metrics

STEPS = 6  # 2 epochs of 3 batches; checkpoints at steps 3 (epoch end), 4 and 6


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def read_scalars():
    """``read_scalars(run_dir, tag) -> [(step, value)]`` of the run's TensorBoard events."""
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )

    def read(run_dir: Path, tag: str) -> list[tuple[int, float]]:
        events = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"))
        events.Reload()
        if tag not in events.Tags()["scalars"]:
            return []
        return [(event.step, event.value) for event in events.Scalars(tag)]

    return read


def make_trainer(run_dir: Path, **settings) -> Trainer:
    options = dict(
        lr=0.05,
        warmup_steps=2,
        epochs=2,
        grad_clip=2.0,
        run_dir=run_dir,
        checkpoint_every=4,
        keep_last=3,
        progress=False,
        tensorboard=True,
    )
    options.update(settings)
    return Trainer(tiny_model(0), tiny_loader(), **options)


def csv_column(run_dir: Path, column: str) -> list[tuple[int, float]]:
    return [(int(row["step"]), float(row[column])) for row in read_metrics(run_dir / "metrics.csv")]


def assert_same_series(scalars: list[tuple[int, float]], rows: list[tuple[int, float]]) -> None:
    assert [step for step, _ in scalars] == [step for step, _ in rows]  # one event per step
    for (step, value), (_, expected) in zip(scalars, rows):
        assert value == pytest.approx(expected, rel=1e-6), step  # events hold float32


def test_scalars_equal_the_csv_per_step(tmp_path: Path, read_scalars) -> None:
    make_trainer(tmp_path).fit()
    assert (tmp_path / "tensorboard").is_dir()
    assert_same_series(read_scalars(tmp_path, "loss"), csv_column(tmp_path, "loss"))
    assert len(csv_column(tmp_path, "loss")) == STEPS
    for column in ("lr", "grad_norm", "epoch"):
        assert_same_series(read_scalars(tmp_path, column), csv_column(tmp_path, column))
    assert read_scalars(tmp_path, "step") == []  # the global step, not a tag


def test_events_are_flushed_at_each_checkpoint(tmp_path: Path, monkeypatch) -> None:
    summary_writer = pytest.importorskip("torch.utils.tensorboard").SummaryWriter
    flushed_at: list[int] = []
    flush = summary_writer.flush

    def recording_flush(writer) -> None:
        flushed_at.append(trainer.step)
        flush(writer)

    monkeypatch.setattr(summary_writer, "flush", recording_flush)
    trainer = make_trainer(tmp_path)
    trainer.fit()
    assert flushed_at == [3, 4, STEPS]  # the epoch ends and checkpoint_every=4


def test_resume_hides_steps_logged_after_the_checkpoint(tmp_path: Path, read_scalars) -> None:
    make_trainer(tmp_path).fit()
    # A kill after step 6 was logged but before its checkpoint was complete: resume from step 4.
    shutil.rmtree(dict(checkpoint_dirs(tmp_path))[STEPS])
    resumed = make_trainer(tmp_path, resume=True)
    assert resumed.step == 4
    resumed.fit()
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert_same_series(read_scalars(tmp_path, "loss"), csv_column(tmp_path, "loss"))
    assert [step for step, _ in read_scalars(tmp_path, "loss")] == list(range(1, STEPS + 1))


def test_missing_tensorboard_package_stops_construction(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match="pip install tensorboard") as caught:
        make_trainer(tmp_path)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "tensorboard").exists()


def test_no_tensorboard_folder_by_default(tmp_path: Path) -> None:
    make_trainer(tmp_path, tensorboard=False).fit()
    assert (tmp_path / "metrics.csv").is_file()
    assert not (tmp_path / "tensorboard").exists()
