"""A `slimnas search` killed with SIGKILL mid-search and resumed returns the archs of a run that
was never interrupted (real processes, real kill)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CONFIG = """
[data]
heldout = 0.2
max_train_images = 400
max_test_images = 100

[supernet]
epochs = 1
batch_size = 40
warmup_epochs = 0.0

[search]
methods = ["autoslim"]
budgets = ["macs<=70%", "macs<=30%"]
score_images = 80
score_batch = 40

[run]
dir = "{run_dir}"
"""


def search(config: Path, *, kill_at_iteration: int | None = None) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "slimnas.cli", "search", str(config)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if kill_at_iteration is None:
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output.decode()
        return
    state = config.parent / "run" / "search" / "autoslim.state.json"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if json.loads(state.read_text())["iteration"] >= kill_at_iteration:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    assert process.poll() is None, "the search ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [2, 7])
def test_killed_search_resumes_to_the_same_archs(tmp_path: Path, kill_at: int) -> None:
    runs = {}
    for name in ("killed", "whole"):
        folder = tmp_path / name
        folder.mkdir()
        config = folder / "run.toml"
        config.write_text(CONFIG.format(run_dir=folder / "run"))
        if name == "killed":
            search(config, kill_at_iteration=kill_at)
            partial = json.loads((folder / "run" / "search" / "autoslim.state.json").read_text())
            assert partial["iteration"] >= kill_at and len(partial["found"]) < 2
            assert not (folder / "run" / "search" / "autoslim.json").exists()
        search(config)
        runs[name] = json.loads((folder / "run" / "search" / "autoslim.json").read_text())
    for killed, whole in zip(runs["killed"], runs["whole"]):
        assert killed["arch"] == whole["arch"]
        assert killed["accuracy"] == whole["accuracy"]
        assert killed["info"]["evaluations"] == whole["info"]["evaluations"]
