"""Units (the decisions of a search space) and `Arch` (one choice per unit).

Three kinds of unit, one word each (see DESIGN.md):

* `ChannelUnit`: channel slots that must share one count: a conv's output, the BatchNorm after
  it, the inputs of every layer that reads it, and every branch joined to it by a residual add.
* `DepthUnit`: a run of residual blocks computing ``x + f(x)`` with an identity shortcut, whose
  trailing blocks can be skipped.
* `OpUnit`: a `slimnas.Choice` placed in the model by its author; one candidate runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from slimnas.errors import ArchError

Choice_ = int | str


class _Unit:
    """What every unit offers: its choices, whether it is searched, its default choice."""

    choices: tuple

    @property
    def searchable(self) -> bool:
        return len(self.choices) > 1

    @property
    def default(self) -> Choice_:
        """The original model's choice (the largest channels or depth)."""
        return self.choices[-1]


@dataclass(frozen=True)
class ChannelUnit(_Unit):
    """A set of channel slots that share one channel count.

    Attributes:
        name: stable name, the module path of the unit's first producer in graph order.
        max_channels: the channel count of the original model.
        choices: allowed counts, ascending; the last is ``max_channels``. One choice = fixed.
        granularity: every choice but the max is a multiple of it (group width of grouped convs).
        members: module paths of the layers that produce, normalise or read the unit.
        fixed_reason: why the unit cannot be searched, or ``None`` when it can.
    """

    name: str
    max_channels: int
    choices: tuple[int, ...]
    granularity: int = 1
    members: tuple[str, ...] = ()
    fixed_reason: str | None = None

    kind = "channel"


@dataclass(frozen=True)
class DepthUnit(_Unit):
    """A stage of residual blocks whose trailing identity-shortcut blocks can be skipped.

    Attributes:
        name: stable name (the parent module path, or ``parent[i:j]`` when a parent holds several).
        blocks: module paths of the skippable blocks, in execution order.
        base: blocks of the stage before the first skippable one (0 or 1: a downsampling head).
        choices: allowed total depths ``base + kept``, ascending; block ``i`` of ``blocks`` runs
            iff ``depth > base + i``.
    """

    name: str
    blocks: tuple[str, ...]
    base: int
    choices: tuple[int, ...]

    kind = "depth"


@dataclass(frozen=True)
class OpUnit(_Unit):
    """A `slimnas.Choice` module: exactly one of its named candidates runs.

    Attributes:
        name: module path of the Choice.
        choices: candidate names, in the order the author gave them; the first is the default.
    """

    name: str
    choices: tuple[str, ...]

    kind = "op"

    @property
    def default(self) -> str:
        return self.choices[0]


Unit = ChannelUnit | DepthUnit | OpUnit


@dataclass(frozen=True)
class Arch(Mapping[str, Choice_]):
    """One choice per searchable unit: plain data, hashable, JSON round trip.

    Build one with ``space.max_arch()``, ``space.sample(generator)`` or ``Arch({...})`` and check
    it with ``space.validate(arch)``.
    """

    _items: tuple[tuple[str, Choice_], ...] = field(default=())

    def __init__(self, choices: Mapping[str, Choice_] | None = None):
        object.__setattr__(self, "_items", tuple(sorted((choices or {}).items())))
        # Not a field: a lookup table, so that costs asked thousands of times read choices in O(1).
        object.__setattr__(self, "_lookup", dict(self._items))

    def __getitem__(self, name: str) -> Choice_:
        return self._lookup[name]

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Arch):
            return self._items == other._items
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def replace(self, **changes: Choice_) -> Arch:
        """A copy with some units changed (unit names that are not identifiers: use `merged`)."""
        return self.merged(changes)

    def merged(self, changes: Mapping[str, Choice_]) -> Arch:
        """A copy with the choices in ``changes`` taking precedence."""
        return Arch({**dict(self._items), **changes})

    def to_json(self) -> str:
        return json.dumps(dict(self._items), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Arch:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ArchError(
                f"arch is not valid JSON ({err}); expected an object of unit: choice"
            ) from None
        if not isinstance(data, dict) or not all(
            isinstance(v, (int, str)) and not isinstance(v, bool) for v in data.values()
        ):
            raise ArchError("arch JSON must be an object mapping unit names to ints or strings")
        return cls(data)

    def __repr__(self) -> str:
        return f"Arch({dict(self._items)!r})"

    def __str__(self) -> str:
        if not self._items:
            return "(empty arch)"
        width = max(len(k) for k, _ in self._items)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in self._items)
