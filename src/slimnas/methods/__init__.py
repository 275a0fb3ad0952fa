"""Search methods and baselines, each one class implementing the `Method` protocol
(`slimnas.methods.base`); importing this package registers every built-in one in `METHODS`.

    setup = Setup(data, SupernetConfig(epochs=30), folder="runs/autoslim")
    results = AutoSlim().fit(supernet, setup).search(["macs<=20M", "macs<=50%"])
    small = supernet.export(results[0].arch)
"""

from slimnas.methods.autoslim import AutoSlim, greedy_slim, shrink_candidates
from slimnas.methods.base import (
    METHODS,
    Method,
    Options,
    method_class,
    method_names,
    register,
    unregister,
)
from slimnas.methods.baseline_search import EvolutionSearch, RandomSearch, UniformSearch
from slimnas.methods.baselines import random_search, uniform_search
from slimnas.methods.evolution import evolution_search
from slimnas.methods.fixed_op import FixedOp
from slimnas.methods.joslim import Joslim
from slimnas.methods.proxyless import ProxylessNAS
from slimnas.methods.pruning import MagnitudePruning, TorchPruning
from slimnas.methods.result import Result, arch_costs
from slimnas.methods.scoring import BN_MODES, ArchScorer, Score
from slimnas.methods.setup import Setup, StageStopped
from slimnas.methods.tas import TAS, TASWidth

__all__ = [
    "BN_MODES",
    "METHODS",
    "TAS",
    "ArchScorer",
    "AutoSlim",
    "EvolutionSearch",
    "FixedOp",
    "Joslim",
    "MagnitudePruning",
    "Method",
    "Options",
    "ProxylessNAS",
    "RandomSearch",
    "Result",
    "Score",
    "Setup",
    "StageStopped",
    "TASWidth",
    "TorchPruning",
    "UniformSearch",
    "arch_costs",
    "evolution_search",
    "greedy_slim",
    "method_class",
    "method_names",
    "random_search",
    "register",
    "shrink_candidates",
    "uniform_search",
    "unregister",
]
