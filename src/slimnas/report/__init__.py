"""Reports of a run: markdown tables and figures from its ``results.json``.

results = slimnas.report.read_results("runs/r20/results.json")
slimnas.report.write_report(results, "runs/r20")   # -> runs/r20/report.md and PNGs
"""

from slimnas.report.report import read_results, render_report, write_report
from slimnas.report.tables import summarize

__all__ = ["read_results", "render_report", "summarize", "write_report"]
