"""How each op the tracer meets treats the channel dimension.

Ops are sorted into a few behaviours: *pass* (channels unchanged: activations, pooling, dropout,
BatchNorm), *join* (elementwise with broadcasting: residual adds, squeeze-excitation scaling),
*reshape* (flatten / view / mean: decided from shapes), and layers (conv, linear). Anything else is
*opaque*: the channels it reads and writes are fixed, which shrinks the space but keeps it correct.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from slimnas.errors import TraceError

PASS_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
NORM_MODULES: tuple[type[nn.Module], ...] = (nn.BatchNorm2d, nn.BatchNorm1d)
RESHAPE_MODULES: tuple[type[nn.Module], ...] = (nn.Flatten,)

PASS_FUNCTIONS = {
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.gelu,
    F.silu,
    F.mish,
    F.hardswish,
    F.hardsigmoid,
    F.hardtanh,
    F.sigmoid,
    F.tanh,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    torch.clamp,
    F.dropout,
    F.dropout2d,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    torch.zeros_like,
    torch.ones_like,
    torch.clone,
}
PASS_METHODS = {
    "relu",
    "relu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "tanh_",
    "clamp",
    "clamp_",
    "contiguous",
    "clone",
    "detach",
    "float",
    "to",
    "type_as",
    "zero_",
    "hardswish",
    "hardswish_",
}
JOIN_FUNCTIONS = {
    operator.add,
    operator.iadd,
    operator.sub,
    operator.isub,
    operator.mul,
    operator.imul,
    operator.truediv,
    operator.itruediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
}
JOIN_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
RESHAPE_FUNCTIONS = {torch.flatten, torch.mean, torch.amax, torch.sum, torch.squeeze}
RESHAPE_METHODS = {"flatten", "view", "reshape", "mean", "amax", "sum", "squeeze"}
# Ops whose result is not a tensor, or that only read metadata: ignored.
META_FUNCTIONS = {getattr, len, operator.getitem}
META_METHODS = {"size", "dim"}

# Ops that write into their first input: the peak-memory model does not count a new tensor.
INPLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}


def is_inplace(target: object, module: nn.Module | None, kwargs: dict) -> bool:
    if module is not None:
        return bool(getattr(module, "inplace", False))
    if isinstance(target, str):
        return target.endswith("_")
    return target in INPLACE_FUNCTIONS or bool(kwargs.get("inplace", False))


BEHAVIOURS = ("pass", "join", "opaque")
_REGISTERED: dict[object, str] = {}


def register_rule(op: type[nn.Module] | Callable | str, behaviour: str) -> None:
    """Tell the tracer how a custom op treats channels.

    Args:
        op: a module class (kept whole by the tracer, i.e. an fx leaf), a function, or a tensor
            method name.
        behaviour: "pass" (channels in = channels out, each channel computed from the same
            channel, e.g. an activation), "join" (elementwise over several inputs with
            broadcasting, e.g. a custom gated add), or "opaque" (the channels it reads and writes
            are fixed). Ops with parameters that depend on the channel count must be "opaque"
            (or built from torch's Conv2d / Linear / BatchNorm, which slimnas slices).
    """
    if behaviour not in BEHAVIOURS:
        raise TraceError(f"unknown rule behaviour {behaviour!r}; use one of {BEHAVIOURS}")
    _REGISTERED[op] = behaviour


def unregister_rule(op: type[nn.Module] | Callable | str) -> None:
    """Forget a rule given with `register_rule`."""
    _REGISTERED.pop(op, None)


def registered_modules() -> tuple[type[nn.Module], ...]:
    return tuple(op for op in _REGISTERED if isinstance(op, type))


def classify(target: object, module: nn.Module | None) -> str:
    """One of "conv", "linear", "norm", "pass", "join", "cat", "reshape", "opaque"."""
    if module is not None and type(module) in _REGISTERED:
        return _REGISTERED[type(module)]
    if module is None and _hashable(target) and target in _REGISTERED:
        return _REGISTERED[target]
    if module is not None:
        if isinstance(module, nn.Conv2d):
            return "conv"
        if isinstance(module, nn.Linear):
            return "linear"
        if isinstance(module, NORM_MODULES):
            return "norm"
        if isinstance(module, PASS_MODULES) or type(module).__name__ == "StochasticDepth":
            return "pass"
        if isinstance(module, RESHAPE_MODULES):
            return "reshape"
        return "opaque"
    if isinstance(target, str):
        if target in PASS_METHODS:
            return "pass"
        if target in JOIN_METHODS:
            return "join"
        if target in RESHAPE_METHODS:
            return "reshape"
        return "opaque"
    if getattr(target, "__name__", "") == "stochastic_depth":  # torchvision.ops, fx-wrapped
        return "pass"
    if target in (torch.cat, torch.concat):
        return "cat"
    if target in PASS_FUNCTIONS:
        return "pass"
    if target in JOIN_FUNCTIONS:
        return "join"
    if target in RESHAPE_FUNCTIONS:
        return "reshape"
    return "opaque"


# Subclasses that override forward but compute what their torch base class does (timm's Linear
# only adds a TorchScript branch); by ``module.qualname``, so that timm need not be imported.
SAME_AS_BASE = {"timm.layers.linear.Linear"}


def is_layer_subclass(module: nn.Module) -> bool:
    """A subclass of Conv2d, Linear or BatchNorm that computes what its torch base class does
    (it keeps the base's forward, or is listed in `SAME_AS_BASE`); traced whole, as its base."""
    for base in (nn.Conv2d, nn.Linear, *NORM_MODULES):
        cls = type(module)
        if isinstance(module, base) and cls is not base:
            return cls.forward is base.forward or f"{cls.__module__}.{cls.__qualname__}" in (
                SAME_AS_BASE
            )
    return False


def is_norm_act(module: nn.Module) -> bool:
    """A BatchNorm followed inside the same module by channel-wise ops: timm's
    ``BatchNormAct2d`` (``forward`` = batch norm, then ``self.drop``, then ``self.act``). Traced
    whole as a norm (each channel stays its own), so that its channels can be sliced."""
    if type(module) in (nn.BatchNorm2d, nn.BatchNorm1d) or not isinstance(module, NORM_MODULES):
        return False
    parts = [getattr(module, name, None) for name in ("drop", "act")]
    return all(isinstance(p, nn.Module) and classify(None, p) == "pass" for p in parts)


def _hashable(target: object) -> bool:
    try:
        hash(target)
    except TypeError:
        return False
    return True
