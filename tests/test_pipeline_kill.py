"""A `slimnas search` killed with SIGKILL mid-search and resumed returns the archs of a run that
was never interrupted (real processes, real kill): AutoSlim's greedy search, and random and
evolutionary search through to the final results.json."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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


BASELINES = """
[data]
heldout = 0.2
max_train_images = 400
max_test_images = 100

[supernet]
epochs = 1
batch_size = 40
warmup_epochs = 0.0

[search]
methods = ["random", "evolution"]
budgets = ["macs<=70%", "macs<=40%"]
score_images = 80
score_batch = 40

[search.random]
samples = 40

[search.evolution]
population = 8
generations = 4

[retrain]
epochs = 1
batch_size = 40
warmup_epochs = 0.0
seeds = [0]

[run]
dir = "{run_dir}"
"""

# What must not change when a run is killed and resumed (timings and latencies are measured).
COMPARED = ("method", "budget", "seed", "arch", "macs", "params", "memory")
COMPARED += ("search_accuracy", "test_accuracy", "test_loss", "epochs")


def run_killed_when(config: Path, ready: Callable[[Path], bool], state: Path) -> str:
    """``slimnas -v run --resume`` killed with SIGKILL as soon as ``ready(state)`` is true;
    its log."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "slimnas.cli", "-v", "run", str(config), "--resume"]
    log = config.parent / "killed.log"
    with log.open("w") as err:
        process = subprocess.Popen(command, env=env, stdout=err, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None and not ready(state):
            time.sleep(0.02)
        assert process.poll() is None, log.read_text()[-2000:]
        process.send_signal(signal.SIGKILL)
        process.wait()
    return log.read_text()


def read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def first_chunk_scored(state: Path) -> bool:
    """Random search saved its first chunk (64 archs) of scores."""
    return len(read(state).get("scores", [])) >= 64


def mid_evolution(state: Path) -> bool:
    """Evolution saved its second generation of the first budget, or finished that budget."""
    progress = read(state).get("progress", {})
    current = progress.get("current") or {}
    return current.get("done", 0) >= 2 or len(progress.get("finished", [])) >= 1


@pytest.mark.slow
def test_random_and_evolution_killed_mid_search_end_with_the_same_results(tmp_path: Path) -> None:
    """Random search killed after its first chunk of scores, evolution killed after its first
    generations (real SIGKILL), each resumed: results.json equals an uninterrupted run's."""
    rows = {}
    for name in ("whole", "killed"):
        folder = tmp_path / name
        folder.mkdir()
        config = folder / "run.toml"
        config.write_text(BASELINES.format(run_dir=folder / "run"))
        search = folder / "run" / "search"
        if name == "killed":
            run_killed_when(config, first_chunk_scored, search / "random.state.json")
            assert not (search / "random.json").exists()
            log = run_killed_when(config, mid_evolution, search / "evolution.state.json")
            resumed = re.search(r"resuming random search: (\d+) archs already scored", log)
            assert resumed and int(resumed.group(1)) >= 64, log[-2000:]
            assert (search / "random.json").exists() and not (search / "evolution.json").exists()
            progress = read(search / "evolution.state.json")["progress"]
            assert len(progress["finished"]) < 2  # killed before the last budget was done
        finish = subprocess.run(
            [sys.executable, "-m", "slimnas.cli", "-v", "run", str(config), "--resume"],
            env=dict(os.environ, OMP_NUM_THREADS="1"),
            check=True,
            capture_output=True,
            text=True,
        )
        if name == "killed":
            assert "resuming evolution search" in finish.stderr
        results = json.loads((folder / "run" / "results.json").read_text())
        rows[name] = [{key: row[key] for key in COMPARED} for row in results["rows"]]
    assert len(rows["whole"]) == 2 * 2  # methods x budgets x seeds
    assert rows["killed"] == rows["whole"]
