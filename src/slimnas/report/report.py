"""`write_report`: a run's ``results.json`` as a markdown report with tables and figures.

The report says what was run, gives one table per budget (costs, held-out search accuracy with
inherited weights, retrained test accuracy as mean ± sample std over seeds, and the difference to
the reference method, `REFERENCE_METHOD`), the figures, and the channels each method kept per
layer. Figures need matplotlib; without it the report is written all the same, with a note
saying how to get them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slimnas.errors import ConfigError
from slimnas.io import atomic_write_text
from slimnas.report import plots
from slimnas.report.proxy import proxy_section
from slimnas.report.sections import FIGURES, TEXT
from slimnas.report.tables import (
    DASH,
    REFERENCE_METHOD,
    budget_table,
    channel_units,
    channels_table,
    method_key,
    op_units,
    ops_table,
    order_budgets,
    recipe_table,
    summarize,
)

log = logging.getLogger(__name__)

REPORT_NAME = "report.md"
NO_MATPLOTLIB_NOTE = (
    "Figures were skipped because matplotlib is not installed: "
    "`pip install 'slimnas[plot]'` and write the report again."
)
_STATISTICS = (
    "**Test top-1** is the final-epoch top-1 accuracy on the test split after retraining, measured "
    "once per model and never used to choose anything; tables show its mean ± sample standard "
    "deviation (n − 1 denominator) over seeds, with n the number of seeds, and leave out ± when "
    "n = 1. **Search acc.** is held-out top-1 of the arch with weights inherited from the "
    "supernet (BatchNorm recalibrated), before retraining, on held-out images that no search "
    "selected on (`search.report_images`; with 0 it is the search's own, optimistic score). "
    f"**Δ vs {REFERENCE_METHOD}** is the difference of test means to "
    f"{REFERENCE_METHOD} (the reference method of the budget tables) at the same budget, in "
    "percentage points. Costs are counted on the exported model "
    "(peak memory: activations at batch 1)."
)

_LATENCY_NOTE = (
    "**Latency** is measured on each final (exported) model with {setting} timed calls, after "
    "warm-up; tables show the median and the 10th–90th percentile band. Under a latency budget, "
    "**Predicted** is the latency table's prediction that the search held to the budget, and "
    "**Measured vs budget** the measured median minus the limit, its share of the limit, and "
    "whether it meets the limit (or does within the measured spread). Each model is timed in "
    "interleaved rounds with the space's max arch, and Measured vs budget rescales its times by "
    "the max arch's prediction over its time in those rounds: it is the model at the machine's "
    "speed when the latency table was calibrated, as the budget is (a machine whose speed "
    "drifts shifts the plain measurement, not this)."
)


def read_results(path: str | Path) -> dict[str, Any]:
    """Load a run's ``results.json``.

    Raises:
        ConfigError: the file is missing, unreadable, not JSON, or not a JSON object.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"results file {path} does not exist; run a search first") from None
    except OSError as err:
        raise ConfigError(f"cannot read results file {path}: {err.strerror}") from None
    try:
        results = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"results file {path} is not valid JSON ({err}); it may be truncated, rerun the step "
            "that writes it"
        ) from None
    if not isinstance(results, dict):
        raise ConfigError(
            f"results file {path} must hold a JSON object, not {type(results).__name__}"
        )
    return results


def _check_rows(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rows = results.get("rows") or []
    if not isinstance(rows, Sequence) or isinstance(rows, str):
        raise ConfigError("results 'rows' must be a list of result rows")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or "method" not in row or "budget" not in row:
            raise ConfigError(f"results row {i} must be an object with 'method' and 'budget'")
    return list(rows)


def _join(items: Sequence[Any]) -> str:
    return ", ".join(f"`{item}`" for item in items) or DASH


def _summary_paragraph(results: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    model = results.get("model", "an unnamed model")
    data = results.get("data", "unnamed data")
    methods = sorted({str(r["method"]) for r in rows}, key=method_key)
    budgets = order_budgets(str(r["budget"]) for r in rows)
    seeds = sorted({r.get("seed") for r in rows if r.get("seed") is not None})
    kinds = {u.get("kind", "channel") for u in results.get("units") or []}
    searched = " and ".join(
        what
        for kind, what in (("channel", "channel widths"), ("depth", "depths"), ("op", "operators"))
        if kind in kinds
    )
    text = (
        f"We searched the {searched or 'channel widths'} of **{model}** on {data} with "
        f"{_join(methods)} "
        f"under the budgets {_join(budgets)}, then retrained each found arch with seeds "
        f"{_join(seeds)}; the recipe is below."
    )
    biggest = results.get("max") or {}
    if biggest:
        parts = []
        for key, label, scale, unit in (
            ("macs", "MACs", 1e6, "M"),
            ("params", "params", 1e6, "M"),
            ("memory", "peak memory", 1e6, "MB"),
        ):
            if biggest.get(key) is not None:
                parts.append(f"{biggest[key] / scale:.3f} {unit} {label}")
        text += " The unpruned model has " + ", ".join(parts) + "."
    return text


def _figures(
    results: Mapping[str, Any],
    summaries: Sequence[Mapping[str, Any]],
    units: Sequence[Mapping[str, Any]],
    out_dir: Path,
) -> list[tuple[str, str]]:
    """Draw every figure that has data (the common ones, then each method's section of
    `slimnas.report.sections.FIGURES`); returns (caption, file name) pairs."""
    colors = plots.method_colors(s["method"] for s in summaries)
    drawn = []
    for cost, caption in (
        ("macs", "Test accuracy vs MACs"),
        ("params", "Test accuracy vs parameters"),
        ("latency_ms", "Test accuracy vs latency"),
    ):
        name = f"accuracy_vs_{cost.removesuffix('_ms')}.png"
        if plots.plot_accuracy_vs_cost(summaries, cost, out_dir / name, colors):
            drawn.append((caption, name))
    if plots.plot_channels(summaries, units, out_dir / "channels.png", colors):
        drawn.append(("Channels kept per layer, relative to the unpruned model", "channels.png"))
    for key, section in FIGURES.items():
        if results.get(key):
            drawn += section(results[key], summaries, out_dir, colors)
    return drawn


def render_report(results: Mapping[str, Any], out_dir: str | Path) -> str:
    """The report's markdown; draws the figures into ``out_dir`` when matplotlib is there."""
    out_dir = Path(out_dir)
    rows = _check_rows(results)
    title = results.get("title") or f"Channel-width search on {results.get('model', 'a model')}"
    parts = [f"# {title}", _summary_paragraph(results, rows)]
    if results.get("recipe"):
        parts += ["## Recipe", recipe_table(results["recipe"])]
    texts = [line for key, section in TEXT.items() for line in section(results.get(key), out_dir)]
    if not rows:
        parts += ["## Results", "No results yet: the run has not produced any final models."]
        return "\n\n".join(parts + texts) + "\n"

    summaries = summarize(rows)
    budgets = list(dict.fromkeys(s["budget"] for s in summaries))
    max_costs = results.get("max") or {}
    show_latency = any(s["latency_ms"] is not None for s in summaries)
    parts += ["## Results", _STATISTICS]
    pending = sum(s["pending"] for s in summaries)
    if pending:
        parts.append(
            f"> Retraining is pending for {pending} of {len(rows)} models: their test accuracy "
            f"shows as {DASH} and they are left out of the accuracy figures."
        )
    setting = next((s["latency_setting"] for s in summaries if s.get("latency_setting")), None)
    if show_latency:
        parts.append(_LATENCY_NOTE.format(setting=setting or "the configured runtime"))
    for budget in budgets:
        group = [s for s in summaries if s["budget"] == budget]
        parts += [f"### Budget `{budget}`", budget_table(group, max_costs, show_latency)]
    parts += texts
    parts += proxy_section(summaries, results.get("supernet"))

    parts.append("## Figures")
    if plots.matplotlib_available():
        figures = _figures(results, summaries, results.get("units") or [], out_dir)
        parts += [f"![{caption}]({name})" for caption, name in figures] or ["No figure has data."]
    else:
        parts.append(NO_MATPLOTLIB_NOTE)

    units = results.get("units") or []
    if channel_units(units):
        parts.append("## Channels per layer")
        parts.append("Channels each method kept in each unit (first seed's arch), in model order.")
        for budget in budgets:
            group = [s for s in summaries if s["budget"] == budget]
            parts += [f"### Budget `{budget}`", channels_table(group, units)]
    if op_units(units):
        parts.append("## Operators per block")
        parts.append("Candidate each method chose per searched block; `zero` removes the block.")
        for budget in budgets:
            group = [s for s in summaries if s["budget"] == budget]
            if group:
                parts += [f"### Budget `{budget}`", ops_table(group, units)]
    return "\n\n".join(parts) + "\n"


def write_report(results: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``out_dir/report.md`` and its PNG figures next to it, each atomically.

    Args:
        results: a run's results (the content of its ``results.json``).
        out_dir: the folder to write into; created when missing.

    Returns:
        The path of the report.

    Raises:
        ConfigError: ``results`` has malformed rows.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = atomic_write_text(out_dir / REPORT_NAME, render_report(results, out_dir))
    log.info("wrote %s", path)
    return path


__all__ = ["NO_MATPLOTLIB_NOTE", "read_results", "render_report", "write_report"]
