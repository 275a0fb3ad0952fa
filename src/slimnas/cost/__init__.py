"""Cost models: analytic MACs, parameters and peak memory, and budgets over them."""

from slimnas.cost.budget import Budget, parse_budgets
from slimnas.cost.counting import expected_macs, expected_params, flops, macs, params
from slimnas.cost.memory import expected_peak_memory, peak_memory

__all__ = [
    "Budget",
    "expected_macs",
    "expected_params",
    "expected_peak_memory",
    "flops",
    "macs",
    "params",
    "parse_budgets",
    "peak_memory",
]
