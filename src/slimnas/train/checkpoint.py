"""Training checkpoints: atomic, pickle-free, one directory per step, the last K kept.

A checkpoint of step 1200 is the directory ``run_dir/ckpt-00001200/`` holding

- ``tensors.safetensors``: every tensor of the state (model weights and buffers, optimizer
  buffers such as SGD momentum or AdamW moments, a scheduler's tensors if it has any);
- ``state.json``: everything else (step, optimizer hyper-parameters, scheduler state, RNG states,
  the data loader's position, the config), the paths that name the tensors (`state_tree`), and
  the SHA-256 of the tensors file, so that a truncated or altered file is caught before use.

Both files are written into a hidden temporary directory that is then renamed into place, so a
run killed at any instant leaves either the whole checkpoint or none of it. Loading reads JSON and
safetensors only; no pickle is ever opened, so a file carrying a pickle payload cannot run code:
it is refused with a `CheckpointError` that names it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimnas.errors import CheckpointError, ConfigError
from slimnas.io import write_failed
from slimnas.train.state_tree import join_state, split_state

log = logging.getLogger(__name__)

FORMAT = "slimnas-checkpoint"
VERSION = 1
TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"
_NAME = re.compile(r"ckpt-(\d{8,})")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        step: the training step it was taken after.
        path: its directory.
        state: the nested state that was saved, tensors on the CPU.
        skipped: newer checkpoint directories that were unreadable and skipped (only when
            loaded with ``fallback=True``).
    """

    step: int
    path: Path
    state: dict[str, Any]
    skipped: tuple[Path, ...] = ()


def checkpoint_dirs(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, directory)`` of every checkpoint in ``run_dir``, oldest first (not validated)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for entry in run_dir.iterdir():
        match = _NAME.fullmatch(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """The directory of the checkpoint of ``step`` in ``run_dir`` (whether or not it exists)."""
    return Path(run_dir) / f"ckpt-{step:08d}"


def latest(run_dir: str | Path) -> Path | None:
    """The directory of the newest checkpoint in ``run_dir`` (not validated), or None."""
    found = checkpoint_dirs(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(
    run_dir: str | Path, step: int, state: dict[str, Any], keep_last: int = 3
) -> Path:
    """Write ``state`` as ``run_dir/ckpt-{step:08d}/`` atomically, then keep the last K.

    A checkpoint of the same step already there is replaced. Stale temporary directories left
    by a killed writer are removed. Changes ``run_dir``.

    Args:
        run_dir: the run directory (created if needed).
        step: training steps done; names the directory.
        state: a nested state of dicts, lists, tuples, tensors and JSON values.
        keep_last: how many checkpoints to keep (oldest deleted first).

    Returns:
        The checkpoint directory.
    """
    if keep_last < 1:
        raise ConfigError(f"keep_last must be at least 1, got {keep_last}")
    from safetensors.torch import save

    run_dir = Path(run_dir)
    tree, tensors = split_state(state)
    # Cloned apart: safetensors refuses tensors sharing storage (tied weights).
    blob = save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "tensors_sha256": hashlib.sha256(blob).hexdigest(),
        "state": tree,
    }
    final = checkpoint_path(run_dir, step)
    try:
        _write_checkpoint(run_dir, final, blob, meta)
    except OSError as err:  # a full disk: the checkpoints before this one are untouched
        raise write_failed(final, err) from None
    for _, old in checkpoint_dirs(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write_checkpoint(run_dir: Path, final: Path, blob: bytes, meta: dict[str, Any]) -> None:
    """Write ``final`` through a hidden temporary directory renamed into place."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob(".ckpt-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=run_dir))
    try:
        _write_synced(tmp / TENSORS_FILE, blob)
        _write_synced(tmp / STATE_FILE, json.dumps(meta, separators=(",", ":")).encode())
        _sync_dir(tmp)
        if final.exists():
            old = final.with_name(f".{final.name}.old.tmp")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        _sync_dir(run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read the checkpoint directory ``path`` (JSON and safetensors only, never a pickle).

    Raises:
        CheckpointError: a file is missing, truncated, corrupted, not JSON or not safetensors
            (a pickle, say); the message names the file.
    """
    from safetensors.torch import load

    path = Path(path)
    state_file, tensors_file = path / STATE_FILE, path / TENSORS_FILE
    raw = _read(state_file)
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(
            f"{state_file} is not valid JSON; it is truncated or corrupted (or not a slimnas "
            "checkpoint). Resume from an earlier checkpoint (fallback=True) or start afresh"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{state_file} is not a slimnas checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{state_file} has checkpoint format version {meta.get('version')!r}; this slimnas "
            f"reads version {VERSION}"
        )
    blob = _read(tensors_file)
    if hashlib.sha256(blob).hexdigest() != meta.get("tensors_sha256"):
        raise CheckpointError(
            f"{tensors_file} does not match the checksum in {state_file}; it is truncated or "
            "corrupted. Resume from an earlier checkpoint (fallback=True) or start afresh"
        )
    try:
        tensors = load(blob)
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{tensors_file} is not a valid safetensors file ({err})") from None
    try:
        state = join_state(meta["state"], tensors)
        step = int(meta["step"])
    except (KeyError, TypeError, ValueError, CheckpointError) as err:
        raise CheckpointError(f"{state_file} is malformed: {err}") from None
    return Checkpoint(step=step, path=path, state=state)


def load_latest(run_dir: str | Path, fallback: bool = False) -> Checkpoint:
    """Load the newest checkpoint in ``run_dir``.

    Args:
        run_dir: the run directory.
        fallback: when the newest is unreadable, log a warning and try the one before, and so
            on. Off by default: a damaged checkpoint should be noticed, not silently skipped.

    Raises:
        CheckpointError: there is no checkpoint, or the newest (with ``fallback``: every one) is
            unreadable.
    """
    found = checkpoint_dirs(run_dir)
    if not found:
        raise CheckpointError(f"no checkpoint (ckpt-NNNNNNNN/) in {run_dir}")
    skipped: list[Path] = []
    errors: list[str] = []
    for _, path in reversed(found):
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError as err:
            if not fallback:
                raise
            log.warning("skipping unreadable checkpoint: %s", err)
            skipped.append(path)
            errors.append(str(err))
            continue
        return Checkpoint(checkpoint.step, checkpoint.path, checkpoint.state, tuple(skipped))
    raise CheckpointError(f"no readable checkpoint in {run_dir}; the newest: {errors[0]}")


def set_aside(path: str | Path) -> Path:
    """Rename an unreadable checkpoint directory to ``<name>.corrupt`` (kept for inspection,
    no longer listed). Changes the file system; returns the new path."""
    path = Path(path)
    target = path.with_name(f"{path.name}.corrupt")
    shutil.rmtree(target, ignore_errors=True)
    path.rename(target)
    return target


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror}") from None


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_dir(path: Path) -> None:
    """Make a rename or new entry in ``path`` durable (a no-op where directories can't be
    opened, as on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
