"""ProxylessNAS's report figure (``results.json["proxyless"]``): per search, the argmax and
expected cost against the budget, the normalised entropy of the path probabilities and the
held-out top-1 of the architecture steps (the warm-up has no point)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slimnas.report import plots
from slimnas.report.plots import TraceAxis

FIGURE = "proxyless_search.png"


def figures(
    traces: Mapping[str, Sequence[Mapping[str, Any]]],
    summaries: Sequence[Mapping[str, Any]],
    out_dir: Path,
    colors: Mapping[str, str],
) -> list[tuple[str, str]]:
    drawn = traces and plots.plot_search_traces(
        traces,
        out_dir / FIGURE,
        title="ProxylessNAS searches",
        right=TraceAxis("entropy", "Path entropy / log N (solid)"),
        twin=TraceAxis(
            "arch_acc",
            "Held-out top-1 of architecture steps (%, dashed)",
            scale=100,
            linestyle="--",
            alpha=0.6,
        ),
        color=plots.fixed_color("proxyless"),
    )
    if drawn:
        return [("ProxylessNAS searches: cost of the argmax arch and path entropy", FIGURE)]
    return []


__all__ = ["figures"]
