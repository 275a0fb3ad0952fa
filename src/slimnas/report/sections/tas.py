"""TAS's report figure (``results.json["tas"]``): per search, the argmax and expected cost
against the budget, the weight batches' top-1 in soft mode and the temperature τ."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slimnas.report import plots
from slimnas.report.plots import TraceAxis

FIGURE = "tas_search.png"


def figures(
    traces: Mapping[str, Sequence[Mapping[str, Any]]],
    summaries: Sequence[Mapping[str, Any]],
    out_dir: Path,
    colors: Mapping[str, str],
) -> list[tuple[str, str]]:
    drawn = traces and plots.plot_search_traces(
        traces,
        out_dir / FIGURE,
        title="TAS searches",
        right=TraceAxis("acc", "Weight batches' top-1, soft mode (%)", scale=100),
        twin=TraceAxis("tau", "τ (dashed)", linestyle="--", first_only=True),
        color=plots.fixed_color("tas"),
    )
    if drawn:
        return [("TAS searches: cost of the argmax arch and training accuracy", FIGURE)]
    return []


__all__ = ["figures"]
