"""slimnas: find the channel numbers, depths and operators of a CNN under a hardware budget.

space = slimnas.trace(model, example_input)
supernet = slimnas.Supernet(model, space)
results = slimnas.AutoSlim().fit(supernet, setup).search(["macs<=50%"])  # setup: data, recipe
small = supernet.export(results[0].arch)
"""

from slimnas import models
from slimnas.cost import (
    Budget,
    expected_macs,
    expected_params,
    expected_peak_memory,
    flops,
    macs,
    params,
    parse_budgets,
    peak_memory,
)
from slimnas.dynamic import Choice, Zero
from slimnas.errors import (
    ArchError,
    BudgetError,
    CheckpointError,
    ConfigError,
    ExportError,
    SlimnasError,
    TraceError,
)
from slimnas.methods import (
    METHODS,
    TAS,
    AutoSlim,
    EvolutionSearch,
    FixedOp,
    Joslim,
    Method,
    ProxylessNAS,
    RandomSearch,
    Result,
    Setup,
    TASWidth,
    UniformSearch,
)
from slimnas.space import Arch, ChannelUnit, DepthUnit, OpUnit, Space, trace
from slimnas.space.rules import register_rule, unregister_rule
from slimnas.supernet import Supernet
from slimnas.train.bn import recalibrate_bn

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "Arch",
    "ArchError",
    "AutoSlim",
    "EvolutionSearch",
    "FixedOp",
    "Joslim",
    "Method",
    "ProxylessNAS",
    "RandomSearch",
    "Result",
    "Setup",
    "TAS",
    "TASWidth",
    "UniformSearch",
    "Budget",
    "BudgetError",
    "ChannelUnit",
    "CheckpointError",
    "Choice",
    "ConfigError",
    "DepthUnit",
    "ExportError",
    "OpUnit",
    "SlimnasError",
    "Space",
    "Supernet",
    "TraceError",
    "Zero",
    "expected_macs",
    "expected_params",
    "expected_peak_memory",
    "flops",
    "macs",
    "models",
    "params",
    "parse_budgets",
    "peak_memory",
    "recalibrate_bn",
    "register_rule",
    "trace",
    "unregister_rule",
]
