"""Cost models: analytic MACs, parameters and peak memory, measured and predicted latency, and
budgets over them."""

from slimnas.cost.budget import Budget, parse_budgets
from slimnas.cost.counting import expected_macs, expected_params, flops, macs, params
from slimnas.cost.latency.build import build_latency_table
from slimnas.cost.latency.measure import Latency, measure_latency
from slimnas.cost.latency.predict import expected_latency, predict_latency
from slimnas.cost.latency.table import LatencyTarget, load_latency_target
from slimnas.cost.memory import expected_peak_memory, peak_memory

__all__ = [
    "Budget",
    "Latency",
    "LatencyTarget",
    "build_latency_table",
    "expected_latency",
    "expected_macs",
    "expected_params",
    "expected_peak_memory",
    "flops",
    "load_latency_target",
    "macs",
    "measure_latency",
    "params",
    "parse_budgets",
    "peak_memory",
    "predict_latency",
]
