"""AutoSlim's report figure: the greedy path (held-out accuracy of each iteration's arch with
inherited weights) beside the found archs (``results.json["front"]``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slimnas.report import plots

FIGURE = "search_front.png"


def figures(
    front: Sequence[Mapping[str, Any]],
    summaries: Sequence[Mapping[str, Any]],
    out_dir: Path,
    colors: Mapping[str, str],
) -> list[tuple[str, str]]:
    if front and plots.plot_search_front(front, summaries, out_dir / FIGURE, colors):
        return [("Held-out accuracy of the searched archs, inherited weights", FIGURE)]
    return []


__all__ = ["figures"]
