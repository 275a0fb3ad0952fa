"""Report figures: test accuracy against cost, and channels kept per layer.

The channels figure follows AutoSlim (Yu & Huang 2019, arXiv 1903.11728, Fig. 5): the ratio of
channels kept to the unpruned width for each layer in model order, which shows that a searched
arch keeps more channels in deeper layers than a uniformly slimmed one.

matplotlib is an optional dependency (``pip install 'slimnas[plot]'``): it is imported inside the
functions, and figures are drawn on an Agg canvas without touching pyplot's global state. Every
figure reads the statistics computed once by `slimnas.report.tables.summarize`.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimnas.io import atomic_write_bytes
from slimnas.report.tables import REFERENCE_METHOD, channel_units, method_key

log = logging.getLogger(__name__)

# One colour per method in every figure (and every report): fixed for the known methods, the
# baseline in grey, the rest drawn from what is left of matplotlib's tab10 palette.
_FIXED_COLORS = {
    "autoslim": "#1f77b4",
    "joslim": "#ff7f0e",
    "tas": "#2ca02c",
    "proxyless": "#d62728",
    "uniform": "#555555",
    "random": "#8c564b",
    "evolution": "#9467bd",
}
_SPARE_COLORS = ("#e377c2", "#bcbd22", "#17becf", "#7f7f7f", "#aec7e8", "#ffbb78")
_FRONT_AXES = {"macs": ("MACs (M)", 1e6), "memory": ("Peak activation memory (MB)", 1e6)}
_COST_AXES = {
    "macs": ("MACs", "MACs (M)", 1e6),
    "params": ("parameters", "Parameters (M)", 1e6),
    "latency_ms": ("latency", "Latency (ms)", 1.0),
}


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def method_colors(methods: Iterable[str]) -> dict[str, str]:
    """A colour per method: fixed ones for the known methods, spare ones for the others."""
    others = sorted({m for m in methods if m not in _FIXED_COLORS}, key=method_key)
    spare = {m: _SPARE_COLORS[i % len(_SPARE_COLORS)] for i, m in enumerate(others)}
    return {**_FIXED_COLORS, **spare}


def fixed_color(method: str) -> str:
    """The colour ``method`` always has (the first spare one for a method without one)."""
    return _FIXED_COLORS.get(method, _SPARE_COLORS[0])


def _linestyle(method: str) -> str:
    return "--" if method == REFERENCE_METHOD else "-"


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> Path:
    """Render to PNG in memory, then write atomically (readers never see half a file)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    log.debug("wrote %s", path)
    return path


def plot_accuracy_vs_cost(
    summaries: Sequence[Mapping[str, Any]],
    cost: str,
    path: str | Path,
    colors: Mapping[str, str],
) -> Path | None:
    """Test top-1 (mean, std error bars) against one cost, one line per method sorted by cost;
    measured latency with its 10–90 % band as horizontal bars.

    Args:
        summaries: `summarize` entries of every budget.
        cost: ``"macs"``, ``"params"`` or ``"latency_ms"``.
        path: where to write the PNG.
        colors: method → colour, from `method_colors`.

    Returns:
        ``path``, or None when no summary has both a test accuracy and this cost (nothing drawn).
    """
    name, label, scale = _COST_AXES[cost]
    series: dict[str, list[tuple[float, ...]]] = {}
    for s in summaries:
        if s["test_mean"] is None or s.get(cost) is None:
            continue
        x = s[cost] / scale
        # Measured latency carries its 10-90 % band as horizontal bars.
        low = s.get("latency_p10_ms") if cost == "latency_ms" else None
        high = s.get("latency_p90_ms") if cost == "latency_ms" else None
        band = (x - low, high - x) if low is not None and high is not None else (0.0, 0.0)
        point = (x, 100 * s["test_mean"], 100 * (s["test_std"] or 0.0), *band)
        series.setdefault(s["method"], []).append(point)
    if not series:
        return None
    figure = _new_figure(6.4, 4.2)
    axes = figure.add_subplot()
    for method in sorted(series, key=method_key):
        xs, ys, errors, below, above = zip(*sorted(series[method]))
        axes.errorbar(
            xs,
            ys,
            yerr=errors,
            xerr=[below, above] if any(below) or any(above) else None,
            label=method,
            color=colors[method],
            linestyle=_linestyle(method),
            marker="o",
            markersize=5,
            capsize=3,
            linewidth=1.5,
        )
    axes.set_xlabel(label)
    axes.set_ylabel("Test top-1 accuracy (%)")
    axes.set_title(f"Test accuracy vs {name} (mean ± std over seeds)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title="Method")
    return _save(figure, Path(path))


def plot_search_front(
    front: Sequence[Mapping[str, Any]],
    summaries: Sequence[Mapping[str, Any]],
    path: str | Path,
    colors: Mapping[str, str],
) -> Path | None:
    """Held-out top-1 with inherited supernet weights against MACs: AutoSlim's greedy path (one
    point per iteration: the front one pass yields) and every method's found archs.

    Args:
        front: ``{"macs", "accuracy"}`` points of the greedy path.
        summaries: `summarize` entries (their ``search_accuracy`` and ``macs``).
        path: where to write the PNG.
        colors: method → colour.
    """
    points = [
        (p["macs"] / 1e6, 100 * p["accuracy"]) for p in front if p.get("accuracy") is not None
    ]
    if not points:
        return None
    figure = _new_figure(6.4, 4.2)
    axes = figure.add_subplot()
    xs, ys = zip(*points)
    axes.plot(
        xs,
        ys,
        color=colors.get("autoslim", "C0"),
        linewidth=1.0,
        alpha=0.6,
        label="autoslim greedy path",
    )
    for s in sorted(summaries, key=lambda s: method_key(s["method"])):
        if s.get("search_accuracy") is None or s.get("macs") is None:
            continue
        axes.plot(
            s["macs"] / 1e6,
            100 * s["search_accuracy"],
            marker="o",
            linestyle="none",
            color=colors[s["method"]],
            markersize=6,
        )
    for method in sorted({s["method"] for s in summaries}, key=method_key):
        axes.plot([], [], marker="o", linestyle="none", color=colors[method], label=method)
    axes.set_xlabel("MACs (M)")
    axes.set_ylabel("Held-out top-1, inherited weights (%)")
    axes.set_title("Search: held-out accuracy before retraining")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return _save(figure, Path(path))


def _ratio(arch: Mapping[str, Any], unit: Mapping[str, Any]) -> float:
    value = arch.get(unit["name"])
    if value is None:
        return math.nan
    return float(value) / float(unit["max"])


def plot_channels(
    summaries: Sequence[Mapping[str, Any]],
    units: Sequence[Mapping[str, Any]],
    path: str | Path,
    colors: Mapping[str, str],
) -> Path | None:
    """Channels kept / max per channel unit, one panel per budget, one line per method.

    Args:
        summaries: `summarize` entries of every budget (each carries its lowest seed's arch).
        units: the searchable units in model order; only channel units are drawn.
        path: where to write the PNG.
        colors: method → colour, from `method_colors`.

    Returns:
        ``path``, or None when there are no channel units or no archs.
    """
    units = channel_units(units)
    budgets = list(dict.fromkeys(s["budget"] for s in summaries if s["arch"]))
    if not units or not budgets:
        return None
    positions = list(range(len(units)))
    width = min(max(6.4, 1.6 + 0.22 * len(units)), 24.0)
    figure = _new_figure(width, 0.8 + 2.3 * len(budgets))
    grid = figure.subplots(len(budgets), 1, sharex=True, squeeze=False)
    handles: dict[str, Any] = {}
    for axes, budget in zip(grid[:, 0], budgets):
        for s in (s for s in summaries if s["budget"] == budget and s["arch"]):
            (line,) = axes.plot(
                positions,
                [_ratio(s["arch"], u) for u in units],
                label=s["method"],
                color=colors[s["method"]],
                linestyle=_linestyle(s["method"]),
                marker="o",
                markersize=3,
                linewidth=1.3,
            )
            handles.setdefault(s["method"], line)
        axes.set_title(f"Budget {budget}", fontsize=10)
        axes.set_ylabel("kept / max channels")
        axes.set_ylim(0.0, 1.08)
        axes.grid(alpha=0.3)
    bottom = grid[-1, 0]
    bottom.set_xticks(positions)
    bottom.set_xticklabels(
        [u["name"] for u in units], rotation=90, fontsize=7 if len(units) > 20 else 8
    )
    bottom.set_xlim(-0.5, len(units) - 0.5)
    bottom.set_xlabel("Channel unit (model order)")
    methods = sorted(handles, key=method_key)
    grid[0, 0].legend(
        [handles[m] for m in methods],
        methods,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        title="Method",
    )
    figure.suptitle("Channels kept per layer (first seed's arch)")
    figure.tight_layout()
    return _save(figure, Path(path))


@dataclass(frozen=True)
class TraceAxis:
    """One column of a search trace drawn on the right panel (or its twin axis)."""

    column: str
    label: str
    scale: float = 1.0
    linestyle: str = "-"
    alpha: float = 1.0
    first_only: bool = False  # one line (the first trace's) in grey: a shared schedule


def plot_search_traces(
    traces: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | Path,
    *,
    title: str,
    right: TraceAxis,
    twin: TraceAxis,
    color: str = "#1f77b4",
) -> Path | None:
    """One-budget searches (TAS, ProxylessNAS) epoch by epoch: the argmax arch's cost and the
    expected cost as fractions of the budget (left), and two columns of each search on the
    right (``right``, and ``twin`` on a second axis). Epochs without ``cost_argmax`` (no
    architecture step yet) have no point.

    Args:
        traces: ``"<method> <budget>"`` → per-epoch means of the search's metrics.csv.
        path: where to write the PNG.
        title: of the figure.
        right, twin: the right panel's columns.
        color: of the first search; the next ones take the spare colours.

    Returns:
        ``path``, or None when no trace has a point.
    """
    traces = {name: [p for p in points if "cost_argmax" in p] for name, points in traces.items()}
    traces = {name: points for name, points in traces.items() if points}
    if not traces:
        return None
    figure = _new_figure(10.0, 3.8)
    cost_axes, right_axes = figure.subplots(1, 2)
    twin_axes = right_axes.twinx()
    for i, (name, points) in enumerate(sorted(traces.items())):
        line = _SPARE_COLORS[i % len(_SPARE_COLORS)] if i else color
        epochs = [p["epoch"] + 1 for p in points]
        cost_axes.plot(epochs, [p["cost_argmax"] for p in points], color=line, label=name)
        cost_axes.plot(
            epochs, [p["cost_expected"] for p in points], color=line, linestyle=":", alpha=0.8
        )
        for axes, axis in ((right_axes, right), (twin_axes, twin)):
            if axis.first_only and i:
                continue
            values = [axis.scale * p.get(axis.column, float("nan")) for p in points]
            axes.plot(
                epochs,
                values,
                color="#999999" if axis.first_only else line,
                linestyle=axis.linestyle,
                alpha=axis.alpha,
                label=name,
            )
    cost_axes.axhline(1.0, color="#555555", linewidth=0.8)
    cost_axes.set_xlabel("Search epoch")
    cost_axes.set_ylabel("Cost / budget (solid: argmax, dotted: expected)")
    cost_axes.grid(alpha=0.3)
    cost_axes.legend(frameon=False, fontsize=8)
    right_axes.set_xlabel("Search epoch")
    right_axes.set_ylabel(right.label)
    twin_axes.set_ylabel(twin.label)
    right_axes.grid(alpha=0.3)
    figure.suptitle(title)
    return _save(figure, Path(path))


def plot_fronts(fronts: Mapping[str, Any], path: str | Path, colors: Mapping[str, str]):
    """Slimmable fronts compared without retraining: per method, the test top-1 of its front
    archs against their cost (hollow markers) and the step curve the area is taken of (what a
    budget picks, `slimnas.fronts.pick_curve`); the common cost range shaded, the budgets on
    the front's cost as dotted lines.

    Args:
        fronts: ``results.json["fronts"]`` (`slimnas.fronts.compare_fronts`).
        path: where to write the PNG.
        colors: method → colour, from `method_colors`.

    Returns:
        ``path``, or None when no front has a point.
    """
    cost = fronts.get("cost", "macs")
    label, scale = _FRONT_AXES.get(cost, (cost, 1.0))
    methods = {m: v for m, v in (fronts.get("methods") or {}).items() if v.get("curve")}
    if not methods:
        return None
    figure = _new_figure(6.4, 4.2)
    axes = figure.add_subplot()
    for method in sorted(methods, key=method_key):
        color = colors.get(method, _SPARE_COLORS[0])
        points = methods[method]["points"]
        axes.scatter(
            [p[cost] / scale for p in points],
            [100 * p["test_accuracy"] for p in points],
            s=14,
            facecolors="none",
            edgecolors=color,
            linewidths=0.8,
        )
        xs, ys = (
            list(v) for v in zip(*((c / scale, 100 * a) for c, a in methods[method]["curve"]))
        )
        axes.scatter(xs, ys, s=16, color=color)
        explored = methods[method].get("explored")
        if explored and explored[1] / scale > xs[-1]:  # flat up to the costliest arch it saw
            xs, ys = [*xs, explored[1] / scale], [*ys, ys[-1]]
        axes.plot(
            xs,
            ys,
            drawstyle="steps-post",
            color=color,
            linestyle=_linestyle(method),
            linewidth=1.5,
            label=f"{method} ({len(points)} front archs)",
        )
    if fronts.get("range"):
        low, high = fronts["range"]
        axes.axvspan(low / scale, high / scale, color="#999999", alpha=0.12, label="common range")
    for limit in (fronts.get("limits") or {}).values():
        axes.axvline(limit / scale, color="#555555", linestyle=":", linewidth=0.8)
    axes.set_xlabel(label)
    axes.set_ylabel("Test top-1, inherited weights (%)")
    axes.set_title("Slimmable fronts, no retraining")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", frameon=False, fontsize=8)
    return _save(figure, Path(path))


__all__ = [
    "matplotlib_available",
    "method_colors",
    "plot_accuracy_vs_cost",
    "plot_channels",
    "plot_fronts",
    "fixed_color",
    "plot_search_traces",
    "TraceAxis",
]
