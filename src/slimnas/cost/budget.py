"""`Budget`: a bound on a cost, parsed from strings such as ``macs<=20M`` or ``memory<=1.5MB``.

Metrics: ``macs`` and ``flops`` (= 2 × MACs) and ``params`` take plain suffixes K, M, G (10³, 10⁶,
10⁹); ``memory`` (peak activation bytes at batch 1) takes B, KB, MB, GB (powers of 10) or KiB,
MiB, GiB (powers of 2); ``latency_ms`` (milliseconds, optionally ``ms``) is predicted from a
latency table target (`slimnas.cost.latency.table`), which the budget must be given, and may
name the target's device (``latency_ms<=3.5@cpu``). Any metric takes ``%``, relative to the max
arch of a given space (``macs<=50%``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from slimnas.cost.counting import flops, macs, params
from slimnas.cost.latency.predict import predict_latency
from slimnas.cost.latency.table import LatencyTarget
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
LATENCY = "latency_ms"  # the one metric that needs a latency table
_PATTERN = re.compile(
    r"^\s*([a-z_]+)\s*<=\s*([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([a-z]*|%)\s*(?:@\s*(\w+))?\s*$",
    re.IGNORECASE,
)


def _human(metric: str, value: float) -> str:
    if metric == "memory":
        return f"{value / 1e6:.4g}MB"
    if metric == LATENCY:
        return f"{value:.4g} ms"
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.4g}{suffix}"
    return f"{value:.4g}"


@dataclass(frozen=True)
class Budget:
    """``metric <= limit``; ``text`` is the string it was parsed from; ``latency`` is the latency
    table target a ``latency_ms`` budget predicts with."""

    metric: str
    limit: float
    text: str
    latency: LatencyTarget | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(
        cls, text: str, space: Space | None = None, latency: LatencyTarget | None = None
    ) -> Budget:
        """Read ``text``; a ``%`` limit (``macs<=50%``) is relative to ``space``'s max arch, and
        a ``latency_ms`` budget predicts with the table target ``latency``."""
        match = _PATTERN.match(text) if isinstance(text, str) else None
        if not match:
            raise BudgetError(
                f"cannot read budget {text!r}; write it like 'macs<=20M', "
                "'params<=0.3M', 'memory<=1.5MB' or 'latency_ms<=3.5'"
            )
        metric, number, suffix = match.group(1).lower(), float(match.group(2)), match.group(3)
        if metric not in COSTS and metric != LATENCY:
            raise BudgetError(
                f"budget {text!r} names unknown metric {metric!r}; known: "
                f"{', '.join([*COSTS, LATENCY])}"
            )
        if number <= 0:
            raise BudgetError(f"budget {text!r} must be positive")
        if metric == LATENCY:
            _check_latency(text, latency, match.group(4))
        elif match.group(4):
            raise BudgetError(f"budget {text!r}: only latency_ms budgets name a device (@...)")
        budget = cls(metric, 0.0, text.strip(), latency)
        if suffix == "%":
            if space is None:
                raise BudgetError(
                    f"budget {text!r} is relative to the max arch; give the space to parse it, "
                    "or write an absolute limit like 'macs<=20M'"
                )
            if number > 100:
                raise BudgetError(f"budget {text!r} is above 100 % of the max arch")
            limit = number / 100 * budget.cost(space, space.max_arch())
            return cls(metric, limit, text.strip(), latency)
        if metric == LATENCY:
            table = {"": 1, "MS": 1}
        else:
            table = _BYTE_SUFFIX if metric == "memory" else _COUNT_SUFFIX
        scale = table.get(suffix.upper())
        if scale is None:
            raise BudgetError(
                f"budget {text!r} has unknown unit {suffix!r}; use one of "
                f"{', '.join(k for k in table if k)} (or % of the max arch)"
            )
        return cls(metric, number * scale, text.strip(), latency)

    def cost(self, space: Space, arch: Mapping[str, Choice_]) -> float:
        if self.metric == LATENCY:
            _check_latency(self.text, self.latency, None)
            return predict_latency(space, arch, self.latency)
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


def _check_latency(text: str, latency: LatencyTarget | None, device: str | None) -> None:
    if latency is None:
        raise BudgetError(
            f"budget {text!r} needs a latency table: set search.latency_table in the config "
            "(build one with `slimnas latency-table CONFIG`), or pass latency= to Budget.parse"
        )
    if device is not None and device.lower() != latency.device:
        raise BudgetError(
            f"budget {text!r} is for device {device!r} but the latency table target is "
            f"{latency.describe()}; set search.latency_device = {device.lower()!r}"
        )


def parse_budgets(
    texts: list[str] | str, space: Space | None = None, latency: LatencyTarget | None = None
) -> list[Budget]:
    """Parse one budget string or a list of them (``%`` limits relative to ``space``, latency
    budgets predicted with the table target ``latency``)."""
    return [Budget.parse(t, space, latency) for t in ([texts] if isinstance(texts, str) else texts)]


def fill_budget(space: Space, arch: Arch, budget: Budget) -> tuple[Arch, int]:
    """``arch`` widened one channel step at a time while ``budget`` holds; ``(arch, steps)``.

    Each step widens the channel unit whose width ratio (choice ÷ max) would be lowest after
    the step, among those whose step still fits, so the arch stays as close to uniform as the
    grid allows. A width multiplier's grid jumps in coarse steps (every unit changes at once),
    so the largest fitting multiplier can leave 5–10 % of a budget unused; comparing a searched
    arch with it would compare unequal costs.
    """
    choices = dict(arch)
    steps = 0
    units = space.channel_units()
    while True:
        best = None
        for unit in units:
            at = unit.choices.index(choices[unit.name])
            if at + 1 == len(unit.choices):
                continue
            wider = unit.choices[at + 1]
            key = wider / unit.max_channels
            if best is not None and key >= best[0]:
                continue
            if budget.fits(space, {**choices, unit.name: wider}):
                best = (key, unit.name, wider)
        if best is None:
            return Arch(choices), steps
        choices[best[1]] = best[2]
        steps += 1


__all__ = ["COSTS", "LATENCY", "Budget", "fill_budget", "parse_budgets"]
