"""A torchrun job (2 gloo ranks, ``--max-restarts 1``) whose rank 1 is SIGKILLed mid-epoch
restarts, resumes from rank 0's last checkpoint, and ends with the weights of a job that was
never interrupted, bit for bit."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from slimnas.io import load_tensors

SCRIPT = Path(__file__).with_name("killed_rank.py")
TORCHRUN = shutil.which("torchrun") or str(Path(os.sys.executable).with_name("torchrun"))


def torchrun(run_dir: Path, out: Path, *fault: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        TORCHRUN,
        "--standalone",
        "--nproc-per-node",
        "2",
        "--max-restarts",
        "1",
        "--monitor-interval",
        "0.5",
        str(SCRIPT),
        str(run_dir),
        str(out),
        *fault,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
def test_a_killed_rank_restarts_and_ends_with_the_same_weights(tmp_path: Path) -> None:
    torchrun(tmp_path / "whole", tmp_path / "whole.safetensors")
    marker = tmp_path / "rank1-killed.txt"
    # 9 steps, a checkpoint every 2: killed in step 5 (mid second epoch), resumed from step 4.
    torchrun(tmp_path / "killed", tmp_path / "killed.safetensors", "5", str(marker))
    # The job succeeded although rank 1 died: torchrun restarted both ranks.
    assert marker.exists(), "rank 1 was never killed"
    attempts = (tmp_path / "killed" / "attempts.txt").read_text().split()
    assert attempts == ["0", "4"]  # the restart resumed from the checkpoint of step 4
    whole = load_tensors(tmp_path / "whole.safetensors")
    killed = load_tensors(tmp_path / "killed.safetensors")
    assert whole.keys() == killed.keys()
    for key in whole:
        assert torch.equal(whole[key], killed[key]), key
