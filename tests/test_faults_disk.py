"""A full disk in the middle of `slimnas run` (every file is made durable by an fsync, and the
fsync is what a full disk refuses, then every later one until space is freed): one line, exit
2, every checkpoint written before whole and no temporary file left; once there is space again,
``--resume`` ends with the results of a run that never met a full disk."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from slimnas.cli import main
from slimnas.pipeline import Pipeline
from slimnas.train.checkpoint import load_checkpoint
from tests.helpers.faults import comparable, tiny_run_config, toml_of


class FullDisk:
    """``os.fsync`` that fails with ENOSPC from its ``full_at``-th call on (a disk that fills
    up and stays full), counting its calls."""

    def __init__(self, full_at: int | None = None) -> None:
        self.full_at = full_at
        self.calls = 0
        self._fsync = os.fsync

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.full_at is not None and self.calls >= self.full_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._fsync(fd)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict, int]:
    """results.json of an uninterrupted run, and how many fsyncs it took."""
    run_dir = tmp_path_factory.mktemp("disk") / "run"
    disk = FullDisk()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", disk)
        Pipeline(tiny_run_config(run_dir), progress=False).run()
    return json.loads((run_dir / "results.json").read_text()), disk.calls


def fill_then_resume(reference, tmp_path: Path, share: float, monkeypatch, capsys) -> None:
    results, calls = reference
    run_dir = tmp_path / "run"
    config = tmp_path / "run.toml"
    config.write_text(toml_of(tiny_run_config(run_dir)))
    disk = FullDisk(full_at=max(1, round(share * calls)))
    monkeypatch.setattr(os, "fsync", disk)
    capsys.readouterr()

    assert main(["run", str(config)]) == 2

    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("slimnas: error: ") and "No space left" in err
    assert not [p for p in run_dir.rglob("*.tmp")], "a temporary file was left behind"
    for folder in run_dir.rglob("ckpt-*"):
        load_checkpoint(folder)  # every checkpoint written before the disk filled is whole

    monkeypatch.setattr(os, "fsync", disk._fsync)  # space again
    assert main(["run", str(config), "--resume"]) == 0
    after = json.loads((run_dir / "results.json").read_text())
    assert comparable(after) == comparable(results)
    shutil.rmtree(run_dir)


def test_a_full_disk_at_a_checkpoint_is_one_line_and_resumes(
    reference, tmp_path, monkeypatch, capsys
) -> None:
    fill_then_resume(reference, tmp_path, 0.2, monkeypatch, capsys)  # in the supernet stage


@pytest.mark.slow
@pytest.mark.parametrize("share", [0.0, 0.1, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0])
def test_a_full_disk_anywhere_is_one_line_and_resumes(
    reference, tmp_path, share, monkeypatch, capsys
) -> None:
    fill_then_resume(reference, tmp_path, share, monkeypatch, capsys)
