"""`Budget`: a bound on a cost, parsed from strings such as ``macs<=20M`` or ``memory<=1.5MB``.

Metrics: ``macs`` and ``flops`` (= 2 × MACs) and ``params`` take plain suffixes K, M, G (10³, 10⁶,
10⁹); ``memory`` (peak activation bytes at batch 1) takes B, KB, MB, GB (powers of 10) or KiB,
MiB, GiB (powers of 2). Any metric takes ``%``, relative to the max arch of a given space
(``macs<=50%``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from slimnas.cost.counting import flops, macs, params
from slimnas.cost.memory import peak_memory
from slimnas.errors import BudgetError
from slimnas.space.space import Space
from slimnas.space.units import Arch, Choice_

COSTS: dict[str, Callable[[Space, Mapping[str, Choice_]], float]] = {
    "macs": macs,
    "flops": flops,
    "params": params,
    "memory": peak_memory,
}
_COUNT_SUFFIX = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}
_BYTE_SUFFIX = {
    "B": 1,
    "": 1,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}
_PATTERN = re.compile(
    r"^\s*([a-z_]+)\s*<=\s*([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([a-z]*|%)\s*$", re.IGNORECASE
)


def _human(metric: str, value: float) -> str:
    if metric == "memory":
        return f"{value / 1e6:.4g}MB"
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.4g}{suffix}"
    return f"{value:.4g}"


@dataclass(frozen=True)
class Budget:
    """``metric <= limit``; ``text`` is the string it was parsed from."""

    metric: str
    limit: float
    text: str

    @classmethod
    def parse(cls, text: str, space: Space | None = None) -> Budget:
        """Read ``text``; a ``%`` limit (``macs<=50%``) is relative to ``space``'s max arch."""
        match = _PATTERN.match(text) if isinstance(text, str) else None
        if not match:
            raise BudgetError(
                f"cannot read budget {text!r}; write it like 'macs<=20M', "
                "'params<=0.3M' or 'memory<=1.5MB'"
            )
        metric, number, suffix = match.group(1).lower(), float(match.group(2)), match.group(3)
        if metric not in COSTS:
            raise BudgetError(
                f"budget {text!r} names unknown metric {metric!r}; known: {', '.join(COSTS)}"
            )
        if number <= 0:
            raise BudgetError(f"budget {text!r} must be positive")
        if suffix == "%":
            if space is None:
                raise BudgetError(
                    f"budget {text!r} is relative to the max arch; give the space to parse it, "
                    "or write an absolute limit like 'macs<=20M'"
                )
            if number > 100:
                raise BudgetError(f"budget {text!r} is above 100 % of the max arch")
            return cls(metric, number / 100 * COSTS[metric](space, space.max_arch()), text.strip())
        table = _BYTE_SUFFIX if metric == "memory" else _COUNT_SUFFIX
        scale = table.get(suffix.upper())
        if scale is None:
            raise BudgetError(
                f"budget {text!r} has unknown unit {suffix!r}; use one of "
                f"{', '.join(k for k in table if k)} (or % of the max arch)"
            )
        return cls(metric, number * scale, text.strip())

    def cost(self, space: Space, arch: Mapping[str, Choice_]) -> float:
        return COSTS[self.metric](space, arch)

    def fits(self, space: Space, arch: Mapping[str, Choice_]) -> bool:
        return self.cost(space, arch) <= self.limit

    def smallest(self, space: Space) -> tuple[Arch, float]:
        """The cheapest arch of the space under this metric, and its cost.

        Channels and depths are monotone costs, so the min arch is cheapest in them; each op unit
        then takes its cheapest candidate, one unit at a time (exact for additive costs).
        """
        arch = space.min_arch()
        for unit in space.op_units():
            costs = {c: self.cost(space, arch.merged({unit.name: c})) for c in unit.choices}
            arch = arch.merged({unit.name: min(costs, key=costs.get)})
        return arch, self.cost(space, arch)

    def check_feasible(self, space: Space) -> None:
        """Raise `BudgetError` naming the smallest achievable value if nothing fits."""
        _, cost = self.smallest(space)
        if cost > self.limit:
            raise BudgetError(
                f"budget {self.text!r} cannot be met: the smallest arch of this space needs "
                f"{self.metric} {_human(self.metric, cost)}; raise the budget or lower the "
                "space's min_ratio"
            )


def parse_budgets(texts: list[str] | str, space: Space | None = None) -> list[Budget]:
    """Parse one budget string or a list of them (``%`` limits relative to ``space``)."""
    return [Budget.parse(t, space) for t in ([texts] if isinstance(texts, str) else texts)]


__all__ = ["Budget", "COSTS", "parse_budgets"]
