"""`Result`: what a search returns for one budget — the arch, its costs and its held-out score."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from slimnas.cost.budget import COSTS, Budget
from slimnas.space.space import Space
from slimnas.space.units import Arch


def arch_costs(space: Space, arch: Mapping) -> dict[str, float]:
    """Every analytic cost of ``arch`` (macs, flops, params, memory), counted on ``space``."""
    return {metric: cost(space, arch) for metric, cost in COSTS.items()}


@dataclass(frozen=True)
class Result:
    """One found architecture.

    Attributes:
        method: the method that found it (``"autoslim"``, ``"uniform"``, ...).
        budget: the budget text it was searched for (``"macs<=20M"``).
        arch: the architecture.
        costs: its analytic costs (``macs``, ``flops``, ``params``, ``memory``; and
            ``predicted_latency_ms`` under a latency budget).
        accuracy: held-out top-1 with the supernet's inherited weights, None when not scored.
        loss: held-out cross-entropy likewise.
        info: method-specific facts (iterations, ratio, evaluations), JSON-able.
    """

    method: str
    budget: str
    arch: Arch
    costs: dict[str, float]
    accuracy: float | None = None
    loss: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        method: str,
        budget: Budget,
        space: Space,
        arch: Mapping,
        score: Any = None,
        **info: Any,
    ) -> Result:
        """A result with costs counted on ``space`` (and the predicted latency, for a latency
        budget); ``score`` has ``accuracy`` and ``loss``."""
        arch = space.validate(arch)
        costs = arch_costs(space, arch)
        if budget.latency is not None:
            costs["predicted_latency_ms"] = budget.cost(space, arch)
        return cls(
            method,
            budget.text,
            arch,
            costs,
            None if score is None else score.accuracy,
            None if score is None else score.loss,
            dict(info),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["arch"] = dict(self.arch)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        fields = dict(data)
        fields["arch"] = Arch(fields["arch"])
        return cls(**fields)


__all__ = ["Result", "arch_costs"]
