"""Load trained weights onto a model before it is traced or turned into a supernet.

The weights come from a ``.safetensors`` state dict, or from a ``slimnas train`` run directory:
its ``model.safetensors`` when there is one, else the model state of its newest checkpoint
(``ckpt-NNNNNNNN/tensors.safetensors``, read by `slimnas.train.checkpoint`). Nothing is
unpickled: a ``.pt`` / ``.pth`` file is refused with a line saying how to convert it. Keys and
shapes are checked against the model before anything is copied, so a mismatch leaves the model
untouched and names the first differing key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from slimnas.errors import CheckpointError
from slimnas.io import load_tensors

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".tar")
_PREFIXES = ("model.", "module.")  # a Supernet's or a DDP wrapper's state dict


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict stored at ``path`` (a safetensors file or a ``slimnas train`` run dir).

    Raises:
        CheckpointError: missing, unreadable, pickle-based or corrupted file; a directory with
            neither ``model.safetensors`` nor a checkpoint.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            return load_tensors(path / MODEL_FILE)
        from slimnas.train.checkpoint import checkpoint_dirs, load_latest

        if not checkpoint_dirs(path):
            raise CheckpointError(
                f"{path} holds neither {MODEL_FILE} nor a checkpoint (ckpt-NNNNNNNN/); give a "
                "safetensors file or a `slimnas train` run directory"
            )
        state = load_latest(path).state.get("model")
        if not isinstance(state, Mapping):
            raise CheckpointError(f"the newest checkpoint in {path} holds no model state")
        return dict(state)
    if not path.exists():
        raise CheckpointError(f"weights file {path} does not exist")
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path} looks like a pickle ({path.suffix}), which slimnas never opens; save it "
            "with safetensors.torch.save_file(model.state_dict(), 'model.safetensors')"
        )
    return load_tensors(path)


def _strip_prefix(state: dict[str, torch.Tensor], own: Mapping) -> dict[str, torch.Tensor]:
    """``state`` without a wrapper prefix that all its keys share and the model's lack."""
    for prefix in _PREFIXES:
        if (
            state
            and all(k.startswith(prefix) for k in state)
            and not any(k.startswith(prefix) for k in own)
        ):
            return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def first_mismatch(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str:
    """The first (sorted) key that differs between two state dicts, with what differs; ``""``
    when every key and shape agrees."""
    for key in sorted(set(own) | set(state)):
        if key not in state:
            return f"'{key}' is missing from the weights"
        if key not in own:
            return f"'{key}' is not in the model"
        if tuple(own[key].shape) != tuple(state[key].shape):
            return (
                f"'{key}' has shape {tuple(state[key].shape)} in the weights, "
                f"{tuple(own[key].shape)} in the model"
            )
    return ""


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Copy the weights at ``path`` into ``model`` after checking every key and shape.

    Args:
        model: the model (plain, or a `Supernet` at any stage: its inner model is loaded); its
            parameters keep their device and dtype.
        path: a ``.safetensors`` state dict, or a ``slimnas train`` run directory.

    Returns:
        ``model``, loaded.

    Raises:
        CheckpointError: the file cannot be read, or its keys or shapes differ from the model's
            (the message names the first differing key); the model is then unchanged.
    """
    target = getattr(model, "model", model) if hasattr(model, "space") else model
    own = target.state_dict()
    state = _strip_prefix(read_weights(path), own)
    problem = first_mismatch(own, state)
    if problem:
        raise CheckpointError(
            f"weights {path} do not fit this model: {problem}; build the model they were "
            "trained as (name, width, number of classes)"
        )
    target.load_state_dict(state, strict=True)
    log.info("loaded %d tensors from %s", len(state), path)
    return model
