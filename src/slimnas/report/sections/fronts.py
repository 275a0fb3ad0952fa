"""The report's section on slimmable fronts compared without retraining: Joslim's front against
the two-stage baseline's (`slimnas.fronts`, ``results.json["fronts"]``), as a table of the mean
test top-1 over the common cost range and the top-1 at each budget, and a figure."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slimnas.report import plots
from slimnas.report.tables import DASH, method_key

FRONTS_FIGURE = "fronts.png"
_UNITS = {"macs": ("MACs", "M"), "memory": ("peak memory", "MB")}
_SCALE = 1e6


def _cost(value: float, cost: str) -> str:
    return f"{value / _SCALE:.2f} {_UNITS.get(cost, (cost, ''))[1]}".rstrip()


def fronts_table(fronts: Mapping[str, Any]) -> str:
    """Per method: front archs, mean test top-1 over the common range, and the test top-1 (and
    cost) of the front arch each budget picks."""
    cost = fronts.get("cost", "macs")
    name = _UNITS.get(cost, (cost, ""))[0]
    methods = fronts.get("methods") or {}
    budgets = list(dict.fromkeys(b for m in methods.values() for b in m.get("budgets") or {}))
    span = fronts.get("range")
    mean = f"mean top-1 over {_cost(span[0], cost)} – {_cost(span[1], cost)}" if span else "mean"
    header = ["method", "front archs", mean, *(f"top-1 at `{b}`" for b in budgets)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in sorted(methods, key=method_key):
        entry = methods[method]
        auc = entry.get("auc")
        cells = [method, str(len(entry["points"])), DASH if auc is None else f"{auc:.2f} %"]
        for budget in budgets:
            pick = (entry.get("budgets") or {}).get(budget)
            if pick is None:
                cells.append(DASH)
            else:
                accuracy = 100 * pick["test_accuracy"]
                cells.append(f"{accuracy:.2f} % ({_cost(pick[cost], cost)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + f"\n_{name} of each pick in parentheses._"


def fronts_section(fronts: Mapping[str, Any] | None, out_dir: Path) -> list[str]:
    """The section's markdown parts (heading, explanation, table, figure); none without fronts.
    Draws ``fronts.png`` into ``out_dir`` when matplotlib is there."""
    if not fronts or not fronts.get("methods"):
        return []
    cost = fronts.get("cost", "macs")
    name = _UNITS.get(cost, (cost, ""))[0]
    span = fronts.get("range")
    where = (
        f"over the {name} range every method explored, from its cheapest to its costliest "
        f"scored arch ({_cost(span[0], cost)} – {_cost(span[1], cost)})"
        if span
        else "(the methods explored no common range: none)"
    )
    text = (
        f"Each method's front is the Pareto front (held-out loss vs {name}) of the archs it "
        "scored: `joslim`, the widths its training visited, on its own supernet; `random`, "
        "every arch random search scored on the sandwich-rule supernet (the two-stage "
        "baseline). Every front arch is tested once with its supernet's weights after "
        "BatchNorm recalibration, without retraining; the test set picks nothing. Between "
        f"front archs the curve is a step: at {name} c, the front arch with the lowest "
        f"held-out loss among those costing at most c. **Mean top-1** is its area {where}, "
        "divided by the range's width (exact for a step curve). **Top-1 at a budget** is that "
        "of the front arch the budget picks (lowest held-out loss within it)."
    )
    parts = [f"## Slimmable fronts without retraining ({name})", text, fronts_table(fronts)]
    if plots.matplotlib_available():
        colors = plots.method_colors(fronts["methods"])
        if plots.plot_fronts(fronts, out_dir / FRONTS_FIGURE, colors):
            parts.append(f"![Test top-1 of the slimmable fronts vs {name}]({FRONTS_FIGURE})")
    return parts


__all__ = ["FRONTS_FIGURE", "fronts_section", "fronts_table"]
