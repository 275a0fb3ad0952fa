"""`Space`: the units of one model plus the static records that costs are computed from.

A space is discovered by `slimnas.trace` and never needs hand-writing; users may narrow it with
`Space.fix` and `Space.with_choices`. Besides the units it holds, per executed layer, what the
cost models need (kernel size, output positions, which units give its in/out channels, which depth
or op choices switch it off), so that costs are pure arithmetic on an `Arch`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from slimnas.errors import ArchError
from slimnas.space.units import Arch, ChannelUnit, Choice_, DepthUnit, OpUnit, Unit

Gate = tuple[str, int | str]  # (depth unit, runs iff depth > int) or (op unit, runs iff == str)


@dataclass(frozen=True)
class Layer:
    """One executed call of a parameterised (or channel-reading) module, for the cost models.

    Attributes:
        path: module path.
        kind: "conv", "linear", "norm" or "other" (parameters we do not slice).
        in_units: units laid side by side along the input channels (several after a concat).
        out_units: units of the output channels.
        positions: output positions per channel (H·W for convs, tokens for linears).
        kernel: kernel elements kh·kw (1 for linears).
        group_width: 0 for a dense layer; else input channels per group (1 for depthwise).
        bias: the layer has a bias (for norms: affine weight and bias).
        count_params: False on repeated calls of a shared module, so parameters count once.
        fixed_params: parameter count of an "other" record.
        gates: choices that must hold for the layer to run.
        inference: False for layers that run only in training (auxiliary heads): they count in
            parameters, not in MACs or memory.
    """

    path: str
    kind: str
    in_units: tuple[str, ...] = ()
    out_units: tuple[str, ...] = ()
    positions: int = 1
    kernel: int = 1
    group_width: int = 0
    bias: bool = False
    count_params: bool = True
    fixed_params: int = 0
    gates: tuple[Gate, ...] = ()
    inference: bool = True


@dataclass(frozen=True)
class TensorRecord:
    """An activation tensor of the traced graph, for the peak-memory model.

    ``elements`` is its element count per channel at batch 1; its channels are the sum of
    ``units``.
    """

    name: str
    units: tuple[str, ...]
    elements: int
    gates: tuple[Gate, ...] = ()
    inference: bool = True


@dataclass(frozen=True)
class Space:
    """The search space of one model: units, and the static records costs are computed from."""

    units: Mapping[str, Unit]
    layers: tuple[Layer, ...]
    tensors: tuple[TensorRecord, ...]
    live: tuple[tuple[int, ...], ...]  # per execution step, indices of tensors alive then
    input_shape: tuple[int, ...]
    modules: Mapping[str, Mapping[str, object]]  # per module path: what the supernet must know

    # ----------------------------------------------------------------------------------- views
    @property
    def searchable(self) -> dict[str, Unit]:
        return {n: u for n, u in self.units.items() if u.searchable}

    def channel_units(self) -> list[ChannelUnit]:
        return [u for u in self.units.values() if isinstance(u, ChannelUnit) and u.searchable]

    def depth_units(self) -> list[DepthUnit]:
        return [u for u in self.units.values() if isinstance(u, DepthUnit) and u.searchable]

    def op_units(self) -> list[OpUnit]:
        return [u for u in self.units.values() if isinstance(u, OpUnit) and u.searchable]

    def __len__(self) -> int:
        return len(self.searchable)

    def size(self) -> int:
        """Number of distinct archs (product of the choice counts)."""
        total = 1
        for unit in self.searchable.values():
            total *= len(unit.choices)
        return total

    def summary(self) -> str:
        """A short table of the searchable units."""
        rows = [("unit", "kind", "choices")]
        for unit in self.searchable.values():
            choices = ",".join(str(c) for c in unit.choices)
            rows.append(
                (unit.name, unit.kind, choices if len(choices) < 60 else choices[:57] + "...")
            )
        width = max(len(r[0]) for r in rows)
        return "\n".join(f"{a:<{width}}  {b:<7}  {c}" for a, b, c in rows)

    # ----------------------------------------------------------------------------------- archs
    def validate(self, arch: Mapping[str, Choice_]) -> Arch:
        """Check ``arch`` against the space; returns it as an `Arch` of searchable units only.

        Raises:
            ArchError: a unit is unknown or missing, or a choice is not one of its choices.
        """
        for name, value in arch.items():
            unit = self.units.get(name)
            if unit is None:
                raise ArchError(
                    f"arch names unknown unit {name!r}; list the space's units with space.summary()"
                )
            if value not in unit.choices:
                raise ArchError(
                    f"arch gives unit {name!r} the choice {value!r}, which is not one of "
                    f"{list(unit.choices)}"
                )
        missing = [n for n in self.searchable if n not in arch]
        if missing:
            raise ArchError(
                f"arch lacks a choice for unit {missing[0]!r} ({len(missing)} missing); "
                "start from space.max_arch() and change what you need"
            )
        return Arch({n: arch[n] for n in self.searchable})

    def resolve(self, arch: Mapping[str, Choice_]) -> dict[str, Choice_]:
        """Every unit's choice (fixed units at their only value); ``arch`` is not re-validated."""
        return {
            n: arch.get(n, u.default) if u.searchable else u.default for n, u in self.units.items()
        }

    def max_arch(self) -> Arch:
        return Arch(
            {
                n: u.default if isinstance(u, OpUnit) else u.choices[-1]
                for n, u in self.searchable.items()
            }
        )

    def min_arch(self) -> Arch:
        """Smallest channels and depths; op units keep their default (first) candidate."""
        return Arch(
            {
                n: u.default if isinstance(u, OpUnit) else u.choices[0]
                for n, u in self.searchable.items()
            }
        )

    def uniform_arch(self, ratio: float) -> Arch:
        """Every channel unit at the largest choice ≤ ``ratio`` × its max (at least its min);
        depth and op units at their default."""
        if not 0.0 < ratio <= 1.0:
            raise ArchError(f"uniform ratio must be in (0, 1], got {ratio}")
        choices: dict[str, Choice_] = {}
        for name, unit in self.searchable.items():
            if isinstance(unit, ChannelUnit):
                limit = ratio * unit.max_channels * (1 + 1e-9)
                fitting = [c for c in unit.choices if c <= limit]
                choices[name] = fitting[-1] if fitting else unit.choices[0]
            else:
                choices[name] = unit.default
        return Arch(choices)

    def sample(self, generator: torch.Generator | None = None) -> Arch:
        """A uniformly random choice for every searchable unit."""
        units = list(self.searchable.values())
        if not units:
            return Arch({})
        picks = torch.rand(len(units), generator=generator)
        return Arch({u.name: u.choices[int(p * len(u.choices))] for u, p in zip(units, picks)})

    # ------------------------------------------------------------------------------- narrowing
    def fix(self, name: str, value: Choice_ | None = None) -> Space:
        """A copy in which unit ``name`` has one choice (its max/default unless given)."""
        unit = self._unit(name)
        value = unit.default if value is None else value
        if value not in unit.choices:
            raise ArchError(
                f"cannot fix unit {name!r} at {value!r}: choices are {list(unit.choices)}"
            )
        return self._with_unit(dataclasses.replace(unit, choices=(value,)))

    def with_choices(self, name: str, choices: Sequence[Choice_]) -> Space:
        """A copy in which unit ``name`` has the given choices (within its original range)."""
        unit = self._unit(name)
        if isinstance(unit, OpUnit):
            bad = [c for c in choices if c not in unit.choices]
            if bad or not choices:
                raise ArchError(
                    f"unit {name!r} has no candidate {bad[:1]}; it has {list(unit.choices)}"
                )
            return self._with_unit(dataclasses.replace(unit, choices=tuple(dict.fromkeys(choices))))
        values = sorted(set(int(c) for c in choices))
        if isinstance(unit, ChannelUnit):
            low, high = 1, unit.max_channels
            bad = [c for c in values if c % unit.granularity and c != unit.max_channels]
            if bad:
                raise ArchError(
                    f"unit {name!r} needs multiples of its group width "
                    f"{unit.granularity}; {bad[0]} is not"
                )
        else:
            low, high = max(1, unit.base), unit.base + len(unit.blocks)
        if not values or values[0] < low or values[-1] > high:
            raise ArchError(f"choices for unit {name!r} must lie in [{low}, {high}], got {values}")
        return self._with_unit(dataclasses.replace(unit, choices=tuple(values)))

    def _unit(self, name: str) -> Unit:
        if name not in self.units:
            raise ArchError(f"unknown unit {name!r}; list the space's units with space.summary()")
        return self.units[name]

    def _with_unit(self, unit: Unit) -> Space:
        units = dict(self.units)
        units[unit.name] = unit
        return dataclasses.replace(self, units=units)

    # ------------------------------------------------------------------------------------ JSON
    def to_json(self) -> str:
        def unit_json(u: Unit) -> dict:
            return {"kind": u.kind, **dataclasses.asdict(u)}

        return json.dumps(
            {
                "units": [unit_json(u) for u in self.units.values()],
                "layers": [dataclasses.asdict(layer) for layer in self.layers],
                "tensors": [dataclasses.asdict(t) for t in self.tensors],
                "live": self.live,
                "input_shape": self.input_shape,
                "modules": self.modules,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Space:
        data = json.loads(text)
        kinds = {"channel": ChannelUnit, "depth": DepthUnit, "op": OpUnit}
        units: dict[str, Unit] = {}
        for raw in data["units"]:
            kind = kinds[raw.pop("kind")]
            fields = {f.name for f in dataclasses.fields(kind)}
            units[raw["name"]] = kind(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in fields}
            )

        def gates(raw: Iterable) -> tuple[Gate, ...]:
            return tuple((g[0], g[1]) for g in raw)

        layers = tuple(
            Layer(
                **{
                    **r,
                    "in_units": tuple(r["in_units"]),
                    "out_units": tuple(r["out_units"]),
                    "gates": gates(r["gates"]),
                }
            )
            for r in data["layers"]
        )
        tensors = tuple(
            TensorRecord(**{**r, "units": tuple(r["units"]), "gates": gates(r["gates"])})
            for r in data["tensors"]
        )

        return cls(
            units=units,
            layers=layers,
            tensors=tensors,
            live=tuple(tuple(step) for step in data["live"]),
            input_shape=tuple(data["input_shape"]),
            modules=data["modules"],
        )
