"""The report's compute section (``results.json["compute"]``): per method, the training spent
after the starting weights, so that "the same budget" can be checked row by row."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slimnas.report.tables import DASH


def _passes(value: Any) -> str:
    if value is None:
        return "its own training (see its section)"
    return f"{value:,}"


def _seconds(value: Any) -> str:
    return DASH if value is None else f"{value:.0f}"


def compute_section(compute: Mapping[str, Any] | None, out_dir: Path) -> list[str]:
    if not compute or not compute.get("methods"):
        return []
    start = compute.get("weights")
    origin = f"the trained weights `{start}`" if start else "a fresh initialisation"
    intro = (
        f"Training spent after {origin}, per method: **image passes** count one image through "
        "one arch forward and backward (a supernet step of n archs counts n per image, however "
        "narrow they are; search scoring, forward only, is timed, not counted), **seconds** are "
        "wall time on this machine. Fine-tune figures are per found arch and seed (seconds: "
        "their mean). Rows with equal fine-tune passes and zero supernet passes were given "
        "exactly the same training."
    )
    lines = [
        "| Method | Supernet training (image passes) | Supernet (s) | Search (s) | "
        "Fine-tune (image passes) | Fine-tune (s) |",
        "| :--- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for method, c in compute["methods"].items():
        lines.append(
            f"| {method} | {_passes(c.get('supernet_passes'))} | "
            f"{_seconds(c.get('supernet_seconds'))} | {_seconds(c.get('search_seconds'))} | "
            f"{_passes(c.get('finetune_passes'))} | {_seconds(c.get('finetune_seconds'))} |"
        )
    return ["## Compute", intro, "\n".join(lines)]


def missing_section(missing: Mapping[str, Any] | None, out_dir: Path) -> list[str]:
    """Rows a method could not produce (``results.json["missing"]``: method → budget → why)."""
    if not missing:
        return []
    lines = [f"- **{m}**, `{b}`: {why}" for m, rows in missing.items() for b, why in rows.items()]
    return ["## Missing rows", "\n".join(lines)]
