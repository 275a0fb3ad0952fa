"""The hand-designed reference of an op space (ProxylessNAS §4 compares against it): every op
unit at one candidate (``"k3e6"``: MobileNetV2's blocks), the rest at the max arch. One arch,
not a search."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slimnas.cost.budget import Budget
from slimnas.errors import ConfigError
from slimnas.methods.base import Method, register
from slimnas.methods.base import Options as BaseOptions
from slimnas.methods.proxyless import check_op_units
from slimnas.methods.result import Result
from slimnas.settings import text
from slimnas.space.space import Space

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FixedOpOptions(BaseOptions):
    """The reference's candidate."""

    op: str = text("k3e6", "the candidate every op unit takes (MobileNetV2-like: k3e6)")


def check_fixed_op(space: Space, op: str) -> None:
    """Refuse a space without op units, or ``op`` that no op unit has (`ConfigError`)."""
    check_op_units(space, FixedOp.name)
    if not any(op in u.choices for u in space.op_units()):
        known = sorted({c for u in space.op_units() for c in u.choices})
        raise ConfigError(
            f"search.fixed.op {op!r} is no candidate of the space's op units; use one of "
            f"{', '.join(known)}"
        )


@register
class FixedOp(Method):
    """Every op unit at ``op``: `fixed_op_results` on the shared supernet's weights."""

    name = "fixed"
    Options = FixedOpOptions
    legacy_prefix = "fixed"

    def check(self, space: Space, budgets: Sequence[Budget]) -> None:
        check_fixed_op(space, self.options.op)

    def search(self, budgets: Sequence[Budget | str]) -> list[Result]:
        return fixed_op_results(self.space(), self.budgets(budgets), self.options.op, self.scorer)


def fixed_op_results(space: Space, budgets: Sequence[Budget], op: str, scorer=None) -> list[Result]:
    """The hand-designed reference of an op space: every op unit that has candidate ``op``
    takes it (``"k3e6"``: MobileNetV2's blocks), the rest stay at the max arch. It is one arch,
    not a search, so it gets one `Result`: under the budget it fits most tightly (highest cost /
    limit), or, when it fits none, under the loosest one, marked over budget (``info["over"]``:
    its cost / limit): a reference is reported, not made to fit. ``info["reference"]`` is True.

    Raises:
        ConfigError: no op unit of ``space`` has candidate ``op``.
    """
    check_fixed_op(space, op)
    units = [u for u in space.op_units() if op in u.choices]
    arch = space.max_arch().merged({u.name: op for u in units})
    share = {b.text: b.cost(space, arch) / b.limit for b in budgets}
    fitting = [b for b in budgets if b.fits(space, arch)]
    info: dict[str, Any] = {"op": op, "reference": True}
    if fitting:
        budget = max(fitting, key=lambda b: share[b.text])
    else:
        budget = min(budgets, key=lambda b: share[b.text])
        info["over"] = round(share[budget.text], 4)
        log.warning(
            "fixed: every op unit at %s fits none of the budgets; reported under %s at %.0f %%",
            op,
            budget.text,
            100 * share[budget.text],
        )
    score = scorer.score(arch) if scorer is not None else None
    return [Result.of(FixedOp.name, budget, space, arch, score, **info)]


__all__ = ["FixedOp", "FixedOpOptions", "check_fixed_op", "fixed_op_results"]
