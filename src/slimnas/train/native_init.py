"""Native initialisation of a found arch: the model's own init rules, at the arch's own widths.

Retraining a found arch "from scratch" means training the network the paper would build at those
widths (AutoSlim, arXiv 1903.11728, §3.3; TAS, arXiv 1905.09717, §3.3 trains its searched net the
same way). Slicing the full model's initial weights to the arch is not that: a layer cut from 16
to 4 output channels keeps weights drawn for a fan of 16 (Kaiming fan-out), four times too small a
variance, and a narrow net starts with vanishing activations.

Any model builder is supported without knowing its code: `record_init` builds the full model while
recording the last `torch.nn.init` call made on each parameter (the layers' own
``reset_parameters`` and the model's custom loop both go through `torch.nn.init`), and
`apply_native_init` replays those calls on the exported module's smaller tensors, so that every
fan is computed from the new shapes. The default bias rule of convolutions and linears
(uniform in ±1/√fan_in) is recomputed for the new fan-in. Parameters that no init call touched
(e.g. a tensor created with its values in ``__init__``) keep the values the export sliced.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

# The in-place initialisers of torch.nn.init that draw or set a parameter's values.
_INITS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
)


@dataclass
class InitRecord:
    """Per parameter name: the last init call (function name, positional args after the tensor,
    keyword args) and the parameter's shape when it was made."""

    calls: dict[str, tuple[str, tuple, dict[str, Any], tuple[int, ...]]] = field(
        default_factory=dict
    )


def record_init(build: Callable[[], nn.Module]) -> tuple[nn.Module, InitRecord]:
    """``build()`` with every `torch.nn.init` call on a tensor recorded; ``(model, record)``.

    ``torch.nn.init`` is patched only for the duration of the call (not thread-safe).
    """
    made: dict[int, tuple[str, tuple, dict[str, Any], tuple[int, ...]]] = {}
    originals = {name: getattr(nn.init, name) for name in _INITS if hasattr(nn.init, name)}

    def recording(name: str, original: Callable) -> Callable:
        @functools.wraps(original)
        def wrapper(tensor, *args, **kwargs):
            made[id(tensor)] = (name, args, kwargs, tuple(tensor.shape))
            return original(tensor, *args, **kwargs)

        return wrapper

    for name, original in originals.items():
        setattr(nn.init, name, recording(name, original))
    try:
        model = build()
    finally:
        for name, original in originals.items():
            setattr(nn.init, name, original)
    record = InitRecord()
    for name, param in model.named_parameters():
        if id(param) in made:
            record.calls[name] = made[id(param)]
    return model, record


def _fan_in(weight: torch.Tensor) -> int:
    return weight.shape[1] * math.prod(weight.shape[2:]) if weight.dim() > 1 else weight.shape[0]


@torch.no_grad()
def apply_native_init(module: nn.Module, record: InitRecord, seed: int = 0) -> list[str]:
    """Re-draw ``module``'s parameters with ``record``'s init calls at their current shapes.

    ``module`` is an export of the recorded model (same parameter names, smaller tensors). Draws
    from a generator seeded by ``seed`` in parameter order, so the result is reproducible.
    Changes the module's parameters; returns the names re-drawn.
    """
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    params = dict(module.named_parameters())
    redrawn = []
    try:
        for name, param in params.items():
            if name not in record.calls:
                continue
            fn, args, kwargs, shape = record.calls[name]
            owner_path, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_path) if owner_path else module
            weight = getattr(owner, "weight", None)
            if (
                fn == "uniform_"
                and leaf == "bias"
                and isinstance(owner, (nn.Conv2d, nn.Conv1d, nn.Linear))
                and weight is not None
                and len(args) == 2
            ):
                # The layers' default bias rule: U(±1/√fan_in), with the fan-in it was made for.
                old_fan = _fan_in_of_shape(record.calls.get(owner_path + ".weight"), weight)
                if old_fan and math.isclose(args[1], 1 / math.sqrt(old_fan), rel_tol=1e-6):
                    bound = 1 / math.sqrt(_fan_in(weight))
                    args = (-bound, bound)
            getattr(nn.init, fn)(param, *args, **kwargs)
            redrawn.append(name)
    finally:
        torch.random.set_rng_state(state)
    return redrawn


def _fan_in_of_shape(call, weight: torch.Tensor) -> int | None:
    """The fan-in the weight had when its init call was recorded (None if unrecorded)."""
    if call is None:
        return None
    shape = call[3]
    return shape[1] * math.prod(shape[2:]) if len(shape) > 1 else shape[0]


__all__ = ["InitRecord", "apply_native_init", "record_init"]
