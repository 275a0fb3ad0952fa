"""MACs and parameter counts computed from a `Space` and an arch, without running the model.

Convention (the one AutoSlim, TAS and most channel-search papers report): MACs are the
multiply-accumulates of convolutions and fully connected layers only; BatchNorm, activations,
pooling, additions and biases are not counted. FLOPs are 2 × MACs and are named so
(`flops`). Parameters are every trainable tensor of the exported model: conv and linear weights
and biases, BatchNorm affine weights and biases, and any other parameter the model holds (counted
at its fixed size). Buffers (BatchNorm running statistics) are not parameters.

Every cost has an ``expected_*`` form over per-unit choice probabilities, differentiable, for TAS
(Eq. 7: expected FLOPs chained through layers, depth weighted by P(depth reaches the block)) and
ProxylessNAS. Units are treated as independent, so E[C_in · C_out] = E[C_in] · E[C_out] except
when both are the same unit, where E[C²] is used.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from slimnas.errors import ArchError
from slimnas.space.space import Gate, Layer, Space
from slimnas.space.units import Choice_, DepthUnit

Probs = Mapping[str, torch.Tensor]


def _runs(gates: tuple[Gate, ...], choice: Mapping[str, Choice_]) -> bool:
    for unit, value in gates:
        if isinstance(value, str):
            if choice[unit] != value:
                return False
        elif choice[unit] <= value:
            return False
    return True


def _width(units: tuple[str, ...], choice: Mapping[str, Choice_]) -> int:
    """Channels of a layout: the sum of its units' choices (one unit unless concatenated)."""
    return sum(choice[u] for u in units)


def _layer_macs(layer: Layer, cin: int, cout: int) -> int:
    per_output = layer.group_width if layer.group_width else cin
    return layer.kernel * layer.positions * per_output * cout


def _layer_params(layer: Layer, cin, cout):
    if layer.kind == "other":
        return layer.fixed_params
    if layer.kind == "norm":
        return 2 * cout if layer.bias else 0
    per_output = layer.group_width if layer.group_width else cin
    return layer.kernel * per_output * cout + (cout if layer.bias else 0)


def macs(space: Space, arch: Mapping[str, Choice_]) -> int:
    """Multiply-accumulates of convs and linears at ``arch`` (batch 1)."""
    choice = space.resolve(space.validate(arch))
    total = 0
    for layer in space.layers:
        if layer.kind in ("conv", "linear") and layer.inference and _runs(layer.gates, choice):
            total += _layer_macs(
                layer, _width(layer.in_units, choice), _width(layer.out_units, choice)
            )
    return total


def flops(space: Space, arch: Mapping[str, Choice_]) -> int:
    """2 × `macs`: one multiply and one add per multiply-accumulate."""
    return 2 * macs(space, arch)


def params(space: Space, arch: Mapping[str, Choice_]) -> int:
    """Parameter count of the model exported at ``arch``."""
    choice = space.resolve(space.validate(arch))
    total = 0
    for layer in space.layers:
        if layer.count_params and _runs(layer.gates, choice):
            cin = _width(layer.in_units, choice)
            cout = _width(layer.out_units, choice)
            total += _layer_params(layer, cin, cout)
    return total


# --------------------------------------------------------------------------- expected forms
class _Expectation:
    """Expected channel counts and gate probabilities under per-unit distributions."""

    def __init__(self, space: Space, probs: Probs, base: Mapping[str, Choice_] | None):
        self.space = space
        self.probs = dict(probs)
        self.choice = space.resolve(base if base is not None else space.max_arch())
        for name, p in self.probs.items():
            unit = space.units.get(name)
            if unit is None or len(p) != len(unit.choices):
                raise ArchError(
                    f"probabilities for unit {name!r} must have one entry per choice"
                    f" ({len(unit.choices) if unit else 'unknown unit'})"
                )
        self._values: dict[str, torch.Tensor] = {}

    def _values_of(self, name: str) -> torch.Tensor:
        if name not in self._values:
            p = self.probs[name]
            self._values[name] = torch.tensor(
                self.space.units[name].choices, dtype=p.dtype, device=p.device
            )
        return self._values[name]

    def mean(self, name: str):
        if name in self.probs:
            return (self.probs[name] * self._values_of(name)).sum()
        return float(self.choice[name])

    def width(self, units: tuple[str, ...]):
        """Expected channels of a layout (sum of its units' expectations)."""
        total = 0.0
        for name in units:
            total = total + self.mean(name)
        return total

    def second_moment(self, name: str):
        if name in self.probs:
            return (self.probs[name] * self._values_of(name) ** 2).sum()
        return float(self.choice[name]) ** 2

    def gate(self, gates: tuple[Gate, ...]):
        prob = 1.0
        for name, value in gates:
            unit = self.space.units[name]
            if name not in self.probs:
                on = (
                    self.choice[name] == value
                    if isinstance(value, str)
                    else self.choice[name] > value
                )
                if not on:
                    return 0.0
                continue
            p = self.probs[name]
            if isinstance(unit, DepthUnit):
                # P(depth > value): the probability that the stage reaches this block.
                mask = torch.tensor([c > value for c in unit.choices], device=p.device)
                prob = prob * (p * mask).sum()
            else:
                prob = prob * p[list(unit.choices).index(value)]
        return prob


def _expected(space: Space, probs: Probs, base, want_macs: bool):
    e = _Expectation(space, probs, base)
    total = 0.0
    for layer in space.layers:
        if want_macs and (layer.kind not in ("conv", "linear") or not layer.inference):
            continue
        if not want_macs and not layer.count_params:
            continue
        gate = e.gate(layer.gates)
        if isinstance(gate, float) and gate == 0.0:
            continue
        if layer.kind == "other":
            total = total + gate * layer.fixed_params
            continue
        cout = e.width(layer.out_units)
        if layer.kind == "norm":
            value = 2 * cout if layer.bias else 0.0
        elif layer.group_width:
            value = layer.kernel * layer.group_width * cout * (layer.positions if want_macs else 1)
            value = value + (0.0 if want_macs or not layer.bias else cout)
        else:
            pair = (
                e.second_moment(layer.in_units[0])
                if layer.in_units == layer.out_units and len(layer.in_units) == 1
                else e.width(layer.in_units) * cout
            )
            value = layer.kernel * pair * (layer.positions if want_macs else 1)
            value = value + (0.0 if want_macs or not layer.bias else cout)
        total = total + gate * value
    return total if isinstance(total, torch.Tensor) else torch.tensor(float(total))


def expected_macs(space: Space, probs: Probs, base: Mapping[str, Choice_] | None = None):
    """E[MACs] under independent per-unit distributions ``probs`` (unit → probs over choices).

    Units without probabilities take their choice in ``base`` (default: the max arch). The
    result is a tensor differentiable in every given probability vector.
    """
    return _expected(space, probs, base, want_macs=True)


def expected_params(space: Space, probs: Probs, base: Mapping[str, Choice_] | None = None):
    """E[parameters] under ``probs``; see `expected_macs`."""
    return _expected(space, probs, base, want_macs=False)
