"""Safe files: atomic writes (temp file + rename), tensors in safetensors, never unpickling."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

from slimnas.errors import CheckpointError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give what open() would have
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    return _atomic(Path(path), lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def save_tensors(tensors: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """Save tensors as safetensors, atomically (shared storage is copied apart first)."""
    from safetensors.torch import save

    data = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    return atomic_write_bytes(path, save(data))


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a missing or corrupted file raises `CheckpointError`."""
    from safetensors.torch import load

    path = Path(path)
    try:
        return load(path.read_bytes())
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror}") from None
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a valid safetensors file ({err}); it may be truncated or corrupted"
        ) from None
