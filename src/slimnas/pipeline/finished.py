"""What a stage finished, read back on resume: a file that is damaged (truncated, altered, or not
what slimnas wrote, a pickle say) is set aside as ``<name>.corrupt`` with a warning that names it,
and the stage recomputes it from what came before (its checkpoints, the search state), exactly
as if it had never been written. Nothing here unpickles or runs code: JSON and safetensors only.

A flipped bit can leave JSON that still parses (a digit, a letter of a key): the JSON a stage
writes gets the SHA-256 of its bytes beside it (``.<name>.sha256``, written after the file), and
safetensors files carry theirs inside (`slimnas.io.save_tensors`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from slimnas.errors import CheckpointError
from slimnas.io import atomic_write_text, load_json, load_tensors
from slimnas.train import distributed

log = logging.getLogger("slimnas.pipeline")


def write_finished_json(path: Path, value: Any, indent: int | None = 1) -> Path:
    """Write ``value`` as JSON at ``path`` and its checksum beside it (atomically, rank 0
    only). Changes the file system."""
    if distributed.is_main():
        text = json.dumps(value, indent=indent)
        atomic_write_text(path, text)
        atomic_write_text(_digest_file(path), hashlib.sha256(text.encode()).hexdigest() + "\n")
    return path


def _digest_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.sha256")


def _load_checked(path: Path) -> Any:
    """`load_json`, and the checksum beside the file, if there is one, must match."""
    value = load_json(path)
    digest = _digest_file(path)
    if digest.exists():
        expected = digest.read_bytes().decode("ascii", errors="replace").strip()
        if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            raise CheckpointError(
                f"{path} does not match its checksum {digest.name}: it is corrupted"
            )
    return value


def set_aside(path: Path, error: Exception) -> None:
    """Rename the damaged ``path`` (a file or a folder) to ``<name>.corrupt`` (kept for
    inspection, no longer read; rank 0 only) and log a warning naming it. Changes the file
    system."""
    log.warning("%s; set aside as %s.corrupt and recomputed", error, path.name)
    if not distributed.is_main() or not path.exists():
        return
    target = path.with_name(f"{path.name}.corrupt")
    if target.is_dir():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)
    path.rename(target)
    _digest_file(path).unlink(missing_ok=True)


def finished_json(path: Path) -> Any | None:
    """The JSON a stage wrote at ``path``, or None when it is missing or damaged (set aside)."""
    if not path.exists():
        return None
    try:
        return _load_checked(path)
    except CheckpointError as err:
        set_aside(path, err)
        return None


def finished_files(
    folder: Path, json_files: tuple[str, ...], tensor_files: tuple[str, ...]
) -> bool:
    """Whether ``folder`` holds every one of ``json_files`` and ``tensor_files`` readable; when
    one is there but damaged, it is set aside (the stage writes the folder again)."""
    if not all((folder / name).exists() for name in json_files + tensor_files):
        return False
    for name in json_files + tensor_files:
        path = folder / name
        try:
            _load_checked(path) if name in json_files else load_tensors(path)
        except CheckpointError as err:
            set_aside(path, err)
            return False
    return True


__all__ = ["finished_files", "finished_json", "set_aside", "write_finished_json"]
