"""Every random-number generator's state as plain JSON, and back.

A resumed run continues exactly only if every generator that training draws from is where it
was: Python's `random`, NumPy's legacy global generator, torch's CPU generator, every CUDA
device's generator, and any `torch.Generator` a step owns. Their states are written as JSON
(lists of integers, or base64 of torch's byte states), never pickled.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import numpy as np
import torch

from slimnas.errors import CheckpointError


def generator_state(generator: torch.Generator) -> str:
    """The state of a `torch.Generator` as base64 text."""
    return _encode_bytes(generator.get_state())


def set_generator_state(generator: torch.Generator, state: str) -> None:
    """Restore a `torch.Generator` from `generator_state` output. Changes ``generator``."""
    generator.set_state(_decode_bytes(state))


def rng_state() -> dict[str, Any]:
    """The global generators' states (python, numpy, torch CPU, each CUDA device), JSON-able."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(words), "gauss_next": gauss},
        "numpy": {
            "kind": kind,
            "keys": [int(k) for k in keys],
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": _encode_bytes(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_encode_bytes(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global generators from `rng_state` output. Changes global state.

    A saved CUDA state is restored when CUDA is available with the same number of devices;
    otherwise it is skipped (a CPU resume of a GPU run cannot be bit-exact anyway).

    Raises:
        CheckpointError: ``state`` is not an `rng_state` output.
    """
    try:
        py = state["python"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
        npy = state["numpy"]
        keys = np.asarray(npy["keys"], dtype=np.uint32)
        np.random.set_state(
            (npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
        )
        torch.set_rng_state(_decode_bytes(state["torch"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"saved random-number state is malformed ({err})") from None
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all([_decode_bytes(s) for s in cuda])


def _encode_bytes(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _decode_bytes(text: str) -> torch.Tensor:
    data = base64.b64decode(text.encode("ascii"), validate=True)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)
