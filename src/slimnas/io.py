"""Safe files: atomic writes (temp file + rename), tensors in safetensors, JSON for the rest,
never unpickling.

A write that fails (a full disk, a read-only file system) leaves the previous file as it was,
removes its temporary file and raises `StorageError` (one line: the file and the reason); a
read of a truncated, altered or foreign file (a pickle, say) raises `CheckpointError` naming it.
Nothing read here can run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from slimnas.errors import CheckpointError, StorageError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise write_failed(path, err) from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give what open() would have
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise write_failed(path, err) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_failed(path: str | Path, err: OSError) -> StorageError:
    """The one-line `StorageError` of a write of ``path`` that failed with ``err``."""
    return StorageError(
        f"cannot write {path}: {err.strerror or err}; free some space (or fix the permissions), "
        "then run the same command with --resume: everything written before is intact"
    )


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    return _atomic(Path(path), lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def save_tensors(tensors: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """Save tensors as safetensors, atomically (shared storage is copied apart first), with the
    SHA-256 of the tensors in the file's metadata so that a flipped bit is caught on loading."""
    from safetensors.torch import save

    data = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    plain = save(data)
    digest = _tensors_digest(*_split_safetensors(plain))
    return atomic_write_bytes(path, save(data, metadata={DIGEST_KEY: digest}))


DIGEST_KEY = "slimnas_sha256"


def _split_safetensors(raw: bytes) -> tuple[dict, bytes]:
    """The header (JSON) and the data of safetensors bytes (ValueError when malformed)."""
    size = int.from_bytes(raw[:8], "little")
    if len(raw) < 8 or size > len(raw) - 8:
        raise ValueError("the header runs past the end of the file")
    header = json.loads(raw[8 : 8 + size])
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    return header, raw[8 + size :]


def _tensors_digest(header: dict, data: bytes) -> str:
    """SHA-256 of the tensor entries (names, dtypes, shapes, offsets) and of their bytes."""
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode())
    digest.update(data)
    return digest.hexdigest()


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a missing, truncated or corrupted file (its checksum, where it
    has one, does not match) raises `CheckpointError` naming it."""
    from safetensors.torch import load

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror}") from None
    try:
        header, data = _split_safetensors(raw)
        tensors = load(raw)
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(
            f"{path} is not a valid safetensors file ({err}); it may be truncated or corrupted"
        ) from None
    expected = (header.get("__metadata__") or {}).get(DIGEST_KEY)
    if expected is not None and expected != _tensors_digest(header, data):
        raise CheckpointError(
            f"{path} does not match its checksum: it is corrupted; restore it, or delete it "
            "and run again with --resume to recompute it"
        )
    return tensors


def load_json(path: str | Path) -> Any:
    """The JSON value in ``path``.

    Raises:
        CheckpointError: the file cannot be read, or is not JSON (truncated, altered, a pickle);
            the message names it.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(
            f"{path} is not valid JSON: it is truncated or corrupted; restore it, or delete it "
            "and run again with --resume to recompute it"
        ) from None
