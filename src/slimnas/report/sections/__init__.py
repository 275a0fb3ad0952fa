"""Report sections of one method each, keyed by the results.json key its `Method.artifacts`
writes: `FIGURES` draw figures (``(caption, file name)`` pairs), `TEXT` add markdown after the
per-budget tables. A new method's report section is one module here and one entry below."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slimnas.report.sections import autoslim, compute, fronts, proxyless, tas

Figure = Callable[..., list[tuple[str, str]]]

FIGURES: dict[str, Figure] = {
    "front": autoslim.figures,
    "tas": tas.figures,
    "proxyless": proxyless.figures,
}
TEXT: dict[str, Callable[[Any, Any], list[str]]] = {
    "fronts": fronts.fronts_section,
    "compute": compute.compute_section,
    "missing": compute.missing_section,
}

__all__ = ["FIGURES", "TEXT"]
