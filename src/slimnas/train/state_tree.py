"""Nested training state ↔ (a JSON tree, named tensors), so that nothing is ever pickled.

A training state is a tree of dicts, lists and tuples whose leaves are tensors or plain values:
``model.state_dict()``, ``optimizer.state_dict()`` (integer keys, SGD momentum buffers, AdamW
``exp_avg``/``exp_avg_sq``/``step`` tensors, ``betas`` tuples), a scheduler's or a grad scaler's
state. `split_state` takes the tensors out, each under a readable path such as
``optimizer/state/3/exp_avg``, and leaves a JSON tree that names them; `join_state` puts them
back. The round trip is exact: tuples stay tuples, integer keys stay integers, floats keep every
bit (``repr`` is exact, and non-finite floats are spelt out), tensors keep dtype and shape, so
``optimizer.load_state_dict`` receives an identical state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from slimnas.errors import CheckpointError

# Markers of the encoded forms; a dict whose keys collide with them is written as item pairs.
_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_ITEMS = "__items__"
_FLOAT = "__float__"
_MARKERS = {_TENSOR, _TUPLE, _ITEMS, _FLOAT}


def split_state(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state into a JSON-able tree and its tensors by path.

    Raises:
        CheckpointError: a leaf is of a type that has no JSON form (the message names its path).
    """
    tensors: dict[str, torch.Tensor] = {}
    return _encode(state, "", tensors), tensors


def join_state(tree: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Rebuild the state that `split_state` split into ``tree`` and ``tensors``.

    Raises:
        CheckpointError: ``tree`` names a tensor that ``tensors`` lacks, or is malformed.
    """
    try:
        return _decode(tree, tensors)
    except (TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"checkpoint state is malformed ({err})") from None


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        name = path or "tensor"
        if name in tensors:  # keys containing "/" can collide with nested paths
            name = f"{name}#{sum(k.startswith(name + '#') for k in tensors) + 1}"
        tensors[name] = value
        return {_TENSOR: name}
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {_FLOAT: repr(value)}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        plain = all(isinstance(k, str) for k in value) and not _MARKERS & set(value)
        if plain:
            return {k: _encode(v, _join(path, k), tensors) for k, v in value.items()}
        if any(isinstance(k, torch.Tensor) for k in value):
            raise CheckpointError(f"cannot save a dict keyed by tensors at '{path or '/'}'")
        return {
            _ITEMS: [
                [_encode(k, path, tensors), _encode(v, _join(path, str(k)), tensors)]
                for k, v in value.items()
            ]
        }
    raise CheckpointError(
        f"cannot save {type(value).__name__} at '{path or '/'}' in a checkpoint: only tensors, "
        "numbers, strings, None, lists, tuples and dicts have a safe form"
    )


def _join(path: str, key: str) -> str:
    return f"{path}/{key}" if path else key


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, inner),) = value.items()
        if key == _TENSOR:
            if inner not in tensors:
                raise CheckpointError(f"checkpoint names tensor '{inner}', which its file lacks")
            return tensors[inner]
        if key == _TUPLE:
            return tuple(_decode(v, tensors) for v in inner)
        if key == _FLOAT:
            return float(inner)
        if key == _ITEMS:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in inner}
    return {k: _decode(v, tensors) for k, v in value.items()}
