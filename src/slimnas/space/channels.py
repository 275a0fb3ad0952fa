"""Union-find over channel slots, and the rounding of channel choices.

Every tensor the tracer sees gets an element id for its channel dimension; ops that force two
tensors to have the same channel count (residual adds, depthwise convs) merge their elements. Each
final set becomes one `ChannelUnit`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from slimnas.rounding import make_divisible


def channel_choices(
    channels: int, divisor: int, granularity: int, min_ratio: float, steps: int
) -> tuple[int, ...]:
    """Choices of a unit with ``channels`` max: ratios ``k/steps`` from ``min_ratio`` to 1.

    Each ratio is rounded by ``lcm(divisor, granularity)`` (never more than 10 % down) and the
    max itself is always a choice, so a unit narrower than the divisor ends up fixed.
    """
    step = math.lcm(divisor, granularity)
    ratios = {min_ratio} | {k / steps for k in range(1, steps + 1) if k / steps >= min_ratio}
    values = {channels}
    for ratio in ratios:
        value = make_divisible(ratio * channels, step)
        if value < channels:
            values.add(value)
    return tuple(sorted(values))


@dataclass
class ChannelSets:
    """Union-find of channel elements with the facts each set accumulates."""

    parent: list[int] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    fixed: list[str | None] = field(default_factory=list)
    granularity: list[int] = field(default_factory=list)
    producers: list[list[str]] = field(default_factory=list)
    members: list[list[str]] = field(default_factory=list)
    label: list[str] = field(default_factory=list)

    def new(
        self, size: int, label: str, producer: str | None = None, fixed: str | None = None
    ) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.fixed.append(fixed)
        self.granularity.append(1)
        self.producers.append([producer] if producer else [])
        self.members.append([producer] if producer else [])
        self.label.append(label)
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> int:
        """Merge two sets; the older root survives so that names follow graph order."""
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        if b < a:
            a, b = b, a
        if self.size[a] != self.size[b]:
            reason = f"joins {self.size[a]} and {self.size[b]} channels"
            self.fixed[a] = self.fixed[a] or reason
            self.fixed[b] = self.fixed[b] or reason
        self.parent[b] = a
        self.fixed[a] = self.fixed[a] or self.fixed[b]
        self.granularity[a] = math.lcm(self.granularity[a], self.granularity[b])
        self.producers[a] += self.producers[b]
        self.members[a] += self.members[b]
        return a

    def fix(self, i: int, reason: str) -> None:
        root = self.find(i)
        self.fixed[root] = self.fixed[root] or reason

    def add_member(self, i: int, path: str) -> None:
        root = self.find(i)
        if path not in self.members[root]:
            self.members[root].append(path)

    def require_multiple(self, i: int, granularity: int) -> None:
        root = self.find(i)
        self.granularity[root] = math.lcm(self.granularity[root], granularity)

    def roots(self) -> list[int]:
        return [i for i in range(len(self.parent)) if self.find(i) == i]
