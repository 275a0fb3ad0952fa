"""slimnas: find the channel numbers, depths and operators of a CNN under a hardware budget.

space = slimnas.trace(model, example_input)
supernet = slimnas.Supernet(model, space)
results = slimnas.AutoSlim(epochs=30).fit(supernet, train_loader, heldout).search(["macs<=50%"])
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
    AutoSlim,
    EvolutionSearch,
    RandomSearch,
    Result,
    UniformSearch,
)
from slimnas.methods.joslim import Joslim
from slimnas.methods.tas import TAS
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
    "Joslim",
    "RandomSearch",
    "Result",
    "TAS",
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
