"""Per-(method, budget) statistics of a run's results and the markdown tables that show them.

`summarize` is the one place where rows are grouped and averaged; the tables here and the figures
in `slimnas.report.plots` both read its output, so the two can never disagree.

Test accuracy is shown in percent as ``mean ± std (n=…)`` with the sample standard deviation
(n − 1 in the denominator); with a single seed the ``±`` part is left out.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from slimnas.cost.budget import Budget
from slimnas.errors import BudgetError

# Search methods first (in the order their papers appeared in our plan), then the baselines.
METHOD_ORDER = ("autoslim", "joslim", "tas", "proxyless", "uniform", "random", "evolution")
REFERENCE_METHOD = "uniform"
DASH = "—"
_COSTS = ("macs", "params", "memory", "latency_ms")
# Measured latency's spread, and under a latency budget its limit, the table's prediction and
# the measurement rescaled to the machine's speed when the table was calibrated.
_LATENCY = (
    "latency_p10_ms",
    "latency_p90_ms",
    "latency_budget_ms",
    "predicted_latency_ms",
    "latency_at_table_speed_ms",
    "latency_p10_at_table_speed_ms",
)


def method_key(method: str) -> tuple[int, str]:
    """Sort key: the known methods in `METHOD_ORDER`, then the others alphabetically."""
    if method in METHOD_ORDER:
        return METHOD_ORDER.index(method), ""
    return len(METHOD_ORDER), method


def order_budgets(budgets: Iterable[str]) -> list[str]:
    """Distinct budget texts, grouped by metric (first seen first), limit descending in each.

    Texts that do not parse as a `Budget` come last, alphabetically.
    """
    distinct = list(dict.fromkeys(budgets))
    parsed: dict[str, Budget] = {}
    for text in distinct:
        try:
            parsed[text] = Budget.parse(text)
        except BudgetError:
            pass
    metrics = list(dict.fromkeys(b.metric for b in parsed.values()))
    known = sorted(parsed, key=lambda t: (metrics.index(parsed[t].metric), -parsed[t].limit))
    return known + sorted(t for t in distinct if t not in parsed)


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation; the std is None below two values."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


def _mean_of(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    return statistics.fmean(values) if values else None


def summarize(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group result rows by (method, budget) and average them over seeds.

    Args:
        rows: the ``rows`` of a results file, one per (method, budget, seed) final model.

    Returns:
        One dict per (method, budget), budgets in `order_budgets` order and methods in `method_key`
        order within each, with keys ``method``, ``budget``, ``seeds`` (sorted), ``n`` (models),
        ``test_n`` (models with a test accuracy), ``test_mean`` and ``test_std`` (fractions, None
        when missing), ``pending`` (models not retrained yet), ``search_accuracy`` (mean),
        ``macs``, ``params``, ``memory``, ``latency_ms`` (means, None when absent), the measured
        latency's ``latency_p10_ms`` and ``latency_p90_ms``, ``scored_by`` (the network that gave
        ``search_accuracy``; None in runs from before it was recorded), under a latency budget its
        ``latency_budget_ms``, ``predicted_latency_ms``, ``latency_at_table_speed_ms`` and
        ``latency_p10_at_table_speed_ms`` (means, None when absent),
        ``latency_setting`` (how latency was measured), ``arch`` (the lowest seed's) and
        ``same_arch`` (whether every seed found that arch).
    """
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row["method"]), str(row["budget"])), []).append(row)
    budget_rank = {b: i for i, b in enumerate(order_budgets(b for _, b in groups))}
    summaries = []
    for (method, budget), group in sorted(
        groups.items(), key=lambda kv: (budget_rank[kv[0][1]], method_key(kv[0][0]))
    ):
        group = sorted(group, key=lambda r: (r.get("seed") is None, r.get("seed") or 0))
        tests = [float(r["test_accuracy"]) for r in group if r.get("test_accuracy") is not None]
        test_mean, test_std = mean_std(tests)
        arch = dict(group[0].get("arch") or {})
        summaries.append(
            {
                "method": method,
                "budget": budget,
                "seeds": [r.get("seed") for r in group],
                "n": len(group),
                "test_n": len(tests),
                "test_mean": test_mean,
                "test_std": test_std,
                "pending": len(group) - len(tests),
                "search_accuracy": _mean_of(group, "search_accuracy"),
                "scored_by": next((r["scored_by"] for r in group if r.get("scored_by")), None),
                **{cost: _mean_of(group, cost) for cost in _COSTS + _LATENCY},
                "latency_setting": next(
                    (r["latency_setting"] for r in group if r.get("latency_setting")), None
                ),
                "arch": arch,
                "same_arch": all(dict(r.get("arch") or {}) == arch for r in group),
            }
        )
    return summaries


def format_accuracy(mean: float | None, std: float | None, n: int) -> str:
    """``"83.00 ± 1.23 (n=3)"`` in percent from fractions; ``"—"`` without a mean."""
    if mean is None or n == 0:
        return DASH
    if n == 1 or std is None:
        return f"{100 * mean:.2f} (n=1)"
    return f"{100 * mean:.2f} ± {100 * std:.2f} (n={n})"


def format_difference(mean: float | None, reference: float | None) -> str:
    """``mean − reference`` in percentage points with its sign (``"+1.25"``, ``"-0.40"``)."""
    if mean is None or reference is None:
        return DASH
    return f"{100 * (mean - reference):+.2f}"


def _number(value: float | None, scale: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value / scale:.{digits}f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A GitHub markdown table; ``align`` holds one ``l``/``r`` per column (default: left)."""
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(_cell(c) for c in line) + " |" for line in lines)


def recipe_table(recipe: Mapping[str, Any]) -> str:
    """The free-form recipe dict as a two-column table (nested values shown as JSON)."""
    return markdown_table(
        ["Setting", "Value"],
        [[str(k), v if isinstance(v, str) else json.dumps(v)] for k, v in recipe.items()],
    )


def budget_table(
    summaries: Sequence[Mapping[str, Any]],
    max_costs: Mapping[str, float],
    show_latency: bool,
) -> str:
    """The results table of one budget: one row per method.

    Args:
        summaries: `summarize` entries of a single budget, in display order.
        max_costs: costs of the unpruned arch (``macs``, ...), for the "% of max" column.
        show_latency: whether to add the latency column.

    Returns:
        The markdown table, followed by a footnote when some method's seeds found different archs.
    """
    reference = next((s for s in summaries if s["method"] == REFERENCE_METHOD), None)
    header = ["Method", "MACs (M)", "% of max MACs", "Params (M)", "Peak memory (MB)"]
    header += ["Latency (ms) [p10–p90]"] * show_latency
    against = show_latency and any(s.get("latency_budget_ms") is not None for s in summaries)
    header += ["Predicted (ms)", "Measured vs budget (ms)"] * against
    header += ["Search acc. (%, inherited)", "Test top-1 (%), mean ± std (n)"]
    header += [f"Δ vs {REFERENCE_METHOD} (points)"] * (reference is not None)
    max_macs = max_costs.get("macs")
    rows, differing = [], False
    for s in summaries:
        mark = "" if s["same_arch"] else " †"
        differing |= not s["same_arch"]
        share = DASH
        if s["macs"] is not None and max_macs:
            share = f"{100 * s['macs'] / max_macs:.1f}%"
        row = [s["method"] + mark, _number(s["macs"], 1e6), share, _number(s["params"], 1e6)]
        row.append(_number(s["memory"], 1e6))
        if show_latency:
            row.append(_latency_cell(s))
        if against:
            row += [_number(s.get("predicted_latency_ms"), 1, digits=2), budget_distance(s)]
        search = s["search_accuracy"]
        row.append(DASH if search is None else f"{100 * search:.2f}")
        row.append(format_accuracy(s["test_mean"], s["test_std"], s["test_n"]))
        if reference is not None:
            is_reference = s is reference
            diff = format_difference(s["test_mean"], reference["test_mean"])
            row.append("(reference)" if is_reference else diff)
        rows.append(row)
    table = markdown_table(header, rows, align="l" + "r" * (len(header) - 1))
    if differing:
        table += "\n\n† seeds found different archs; costs are means over seeds."
    return table


def _latency_cell(s: Mapping[str, Any]) -> str:
    """``"2.31 [2.20–2.45]"``: the median and, when known, the 10–90 % band."""
    cell = _number(s["latency_ms"], 1, digits=2)
    low, high = s.get("latency_p10_ms"), s.get("latency_p90_ms")
    if s["latency_ms"] is not None and low is not None and high is not None:
        cell += f" [{low:.2f}–{high:.2f}]"
    return cell


def budget_distance(s: Mapping[str, Any]) -> str:
    """How far the measured latency is from a latency budget: ``"-0.42 (88 %), meets"``; "within
    spread" when the median is over the limit but the 10th percentile is not, else "over".

    The measurement at the table's speed is used where the row has it (runs since the max arch
    is measured alongside each final model), else the measurement as it was."""
    adjusted = s.get("latency_at_table_speed_ms")
    measured = s.get("latency_ms") if adjusted is None else adjusted
    limit = s.get("latency_budget_ms")
    if measured is None or limit is None:
        return DASH
    low = s.get("latency_p10_ms" if adjusted is None else "latency_p10_at_table_speed_ms")
    if measured <= limit:
        verdict = "meets"
    elif low is not None and low <= limit:
        verdict = "within spread"
    else:
        verdict = "over"
    return f"{measured - limit:+.2f} ({100 * measured / limit:.0f} %), {verdict}"


def channel_units(units: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The channel units (``kind`` ``"channel"`` or unset) that carry a ``max`` width."""
    return [u for u in units if u.get("kind", "channel") == "channel" and u.get("max")]


def channels_table(
    summaries: Sequence[Mapping[str, Any]], units: Sequence[Mapping[str, Any]]
) -> str:
    """Channels chosen per unit at one budget: unit, its max, then one column per method.

    Args:
        summaries: `summarize` entries of a single budget, in display order.
        units: the searchable units in model order (``name``, ``kind``, ``max``).
    """
    header = ["Unit", "Max", *(s["method"] for s in summaries)]
    rows = [
        [
            str(u["name"]),
            str(u["max"]),
            *(
                DASH if s["arch"].get(u["name"]) is None else str(s["arch"][u["name"]])
                for s in summaries
            ),
        ]
        for u in channel_units(units)
    ]
    return markdown_table(header, rows, align="l" + "r" * (len(header) - 1))


def op_units(units: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The op units (``kind`` ``"op"``)."""
    return [u for u in units if u.get("kind") == "op"]


def ops_table(summaries: Sequence[Mapping[str, Any]], units: Sequence[Mapping[str, Any]]) -> str:
    """The candidate each method chose per op unit at one budget (``zero``: block removed)."""
    header = ["Block", *(s["method"] for s in summaries)]
    rows = [
        [str(u["name"]), *(str(s["arch"].get(u["name"], DASH)) for s in summaries)]
        for u in op_units(units)
    ]
    return markdown_table(header, rows, align="l" * len(header))


__all__ = [
    "op_units",
    "ops_table",
    "METHOD_ORDER",
    "REFERENCE_METHOD",
    "budget_distance",
    "budget_table",
    "channel_units",
    "channels_table",
    "format_accuracy",
    "format_difference",
    "markdown_table",
    "mean_std",
    "method_key",
    "order_budgets",
    "recipe_table",
    "summarize",
]
