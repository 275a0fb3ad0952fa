"""Latency predicted from a latency table: `predict_latency` and its expected form.

Prediction (ProxylessNAS's lookup-table model, Cai et al. 2019, arXiv 1812.00332, §3.3): the
latency of an arch is the sum, over the segments that run at the arch (their depth and op gates
hold), of the measured latency of the segment at the arch's input and output channels less the
cost of an empty call (which every segment's measurement includes once). Unlike ProxylessNAS the
sum is then calibrated per model on whole archs measured when the table was built: each segment's
latency is multiplied by its factor (`slimnas.cost.latency.fit.fit_segment_scales`; 1 when the
table was calibrated on too few archs), and the sum goes through the line ``overhead + scale *
sum``. Segments timed alone run with warm caches and without their neighbours' layout
conversions (docs/latency.md).

`expected_latency` is the same sum under independent per-unit choice distributions (ProxylessNAS
Eq. 5, E[latency] = Σ_blocks Σ_ops p_op · F(op), extended to channel and depth units as TAS
extends FLOPs): each segment contributes P(its gates hold) · Σ over its units' choices of the
product of their probabilities times its latency there. It is multilinear in the probability
vectors, so one-hot probabilities give `predict_latency` exactly, and it stays a tensor through
every step (pitfall 8 of the brief: never rebuild it from Python floats).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import product

import torch

from slimnas.cost.counting import Probs, _Expectation, _runs
from slimnas.cost.latency.segments import space_key
from slimnas.cost.latency.table import EMPTY_SIGNATURE, LatencyTarget, build_command
from slimnas.errors import ConfigError
from slimnas.space.space import Space
from slimnas.space.units import Choice_

_CACHED_SPACES = 8


@dataclass(frozen=True)
class _Part:
    """A segment, ready for lookups: its gates, the units giving its channels, and its net
    latency (milliseconds) at every combination of their choices."""

    gates: tuple
    units: tuple[str, ...]
    values: dict[tuple, float]
    grid: torch.Tensor  # the same values, one axis per unit, float64
    factor: float = 1.0  # the calibration's factor of this segment (`fit_segment_scales`)


@dataclass(frozen=True)
class _Compiled:
    space: Space
    key: str  # its space_key
    parts: list[_Part]


def _compile(space: Space, target: LatencyTarget) -> _Compiled:
    """Per-segment lookups for ``space``; cached on the target (searches predict thousands)."""
    cached = target._compiled.get(id(space))
    if cached is not None and cached.space is space:
        return cached
    key = space_key(space)
    segments = target.layout_segments(space, key)
    factors = target.segment_scales(key) or [1.0] * len(segments)
    if len(factors) != len(segments):
        raise ConfigError(
            f"latency table {target.source or '(in memory)'}: the calibration of this model has "
            f"{len(factors)} segment factors for {len(segments)} segments; measure it again "
            f"with `{build_command(target.runtime, target.threads, target.batch)} --recalibrate`"
        )
    parts = []
    for segment, factor in zip(segments, factors):
        layer = space.layers[segment.layer]
        units = tuple(dict.fromkeys(layer.in_units + layer.out_units))
        choices = [space.units[u].choices for u in units]
        empty = target.entry_ms(EMPTY_SIGNATURE.format(segment.inputs))
        values = {}
        for combo in product(*choices):
            pick = dict(zip(units, combo))
            cout = sum(pick[u] for u in layer.out_units)
            cin = cout if layer.kind == "norm" else sum(pick[u] for u in layer.in_units)
            values[combo] = target.entry_ms(segment.signature(cin, cout)) - empty
        grid = torch.tensor([values[c] for c in product(*choices)], dtype=torch.float64)
        grid = grid.reshape([len(c) for c in choices])
        parts.append(_Part(layer.gates, units, values, grid, factor))
    compiled = _Compiled(space, key, parts)
    if len(target._compiled) >= _CACHED_SPACES:  # forget the oldest (a search uses one or two)
        target._compiled.pop(next(iter(target._compiled)))
    target._compiled[id(space)] = compiled
    return compiled


def segment_values(space: Space, arch: Mapping[str, Choice_], target: LatencyTarget) -> list[float]:
    """The net latency (ms) of each segment of the table's layout at ``arch``, 0 where the
    segment does not run; without the calibration's factors."""
    choice = space.resolve(space.validate(arch))
    return [
        part.values[tuple(choice[u] for u in part.units)] if _runs(part.gates, choice) else 0.0
        for part in _compile(space, target).parts
    ]


def segment_sum_ms(space: Space, arch: Mapping[str, Choice_], target: LatencyTarget) -> float:
    """The summed net latency of the segments that run at ``arch``, each times its calibration
    factor (no fixed overhead, no scale)."""
    parts = _compile(space, target).parts
    return sum(p.factor * v for p, v in zip(parts, segment_values(space, arch, target)))


def predict_latency(space: Space, arch: Mapping[str, Choice_], target: LatencyTarget) -> float:
    """Predicted latency in milliseconds of ``arch`` exported and run as ``target`` says.

    Raises:
        ConfigError: the table was not built for this model, or lacks a channel choice of it.
    """
    overhead, scale = target.calibration(space, _compile(space, target).key)
    return overhead + scale * segment_sum_ms(space, arch, target)


def expected_latency(
    space: Space,
    probs: Probs,
    target: LatencyTarget,
    base: Mapping[str, Choice_] | None = None,
) -> torch.Tensor:
    """E[latency] in milliseconds under independent per-unit distributions ``probs`` (unit →
    probabilities over its choices; depth units through their gates, as in `expected_macs`).

    Units without probabilities take their choice in ``base`` (default: the max arch). The
    result is a tensor differentiable in every given probability vector; with one-hot vectors it
    equals `predict_latency` of the arch they pick.
    """
    e = _Expectation(space, probs, base)
    reference = next(iter(e.probs.values()), None)
    dtype = reference.dtype if reference is not None else torch.float64
    device = reference.device if reference is not None else None
    compiled = _compile(space, target)
    overhead, scale = target.calibration(space, compiled.key)
    total = torch.zeros((), dtype=dtype, device=device)
    for part in compiled.parts:
        gate = e.gate(part.gates)
        if isinstance(gate, float) and gate == 0.0:
            continue
        value = part.grid.to(dtype=dtype, device=device)
        for unit in part.units:  # contract the leading axis, one unit at a time
            if unit in e.probs:
                value = torch.tensordot(e.probs[unit], value, dims=1)
            else:
                value = value[space.units[unit].choices.index(e.choice[unit])]
        total = total + gate * part.factor * value
    return overhead + scale * total


__all__ = ["expected_latency", "predict_latency", "segment_sum_ms", "segment_values"]
