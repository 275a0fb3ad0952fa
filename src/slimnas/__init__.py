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
    MagnitudePruning,
    Method,
    ProxylessNAS,
    RandomSearch,
    Result,
    Setup,
    TASWidth,
    TorchPruning,
    UniformSearch,
)
from slimnas.pruning import magnitude_arch
from slimnas.ranking import rank_channels
from slimnas.space import Arch, ChannelUnit, DepthUnit, OpUnit, Space, trace
from slimnas.space.rules import register_rule, unregister_rule
from slimnas.supernet import Supernet
from slimnas.train.bn import recalibrate_bn
from slimnas.weights import load_weights

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "TAS",
    "Arch",
    "ArchError",
    "AutoSlim",
    "Budget",
    "BudgetError",
    "ChannelUnit",
    "CheckpointError",
    "Choice",
    "ConfigError",
    "DepthUnit",
    "EvolutionSearch",
    "ExportError",
    "FixedOp",
    "Joslim",
    "MagnitudePruning",
    "Method",
    "OpUnit",
    "ProxylessNAS",
    "RandomSearch",
    "Result",
    "Setup",
    "SlimnasError",
    "Space",
    "Supernet",
    "TASWidth",
    "TorchPruning",
    "TraceError",
    "UniformSearch",
    "Zero",
    "expected_macs",
    "expected_params",
    "expected_peak_memory",
    "flops",
    "load_weights",
    "macs",
    "magnitude_arch",
    "models",
    "params",
    "parse_budgets",
    "peak_memory",
    "rank_channels",
    "recalibrate_bn",
    "register_rule",
    "trace",
    "unregister_rule",
]
