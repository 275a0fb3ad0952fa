"""Fixtures for the data tests: the full shared CIFAR-10 copy in the repository's ignored cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_SCRIPT = REPO.parent / "shared" / "data" / "cifar10.py"


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """``<repo>/data/cache``, holding ``cifar-10-batches-bin/`` written by the shared script."""
    if not SHARED_SCRIPT.is_file():
        pytest.skip(f"shared CIFAR-10 copy absent: no {SHARED_SCRIPT}")
    pytest.importorskip("PIL", reason="the shared CIFAR-10 script decodes JPEGs with Pillow")
    root = REPO / "data" / "cache"
    # The script checks its output against SHA256SUMS and returns at once when it is complete.
    subprocess.run([sys.executable, str(SHARED_SCRIPT), str(root)], check=True, capture_output=True)
    return root
