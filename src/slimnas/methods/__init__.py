"""Search methods on one supernet: AutoSlim and the baselines it is compared with.

method = AutoSlim(epochs=30).fit(supernet, train_loader, heldout_batches)
results = method.search(["macs<=20M", "macs<=50%"])
small = supernet.export(results[0].arch)
"""

from slimnas.methods.autoslim import AutoSlim, greedy_slim, shrink_candidates
from slimnas.methods.base import SupernetMethod
from slimnas.methods.baselines import evolution_search, random_search, uniform_search
from slimnas.methods.registry import METHODS, EvolutionSearch, RandomSearch, UniformSearch
from slimnas.methods.result import Result, arch_costs
from slimnas.methods.scoring import BN_MODES, ArchScorer, Score

__all__ = [
    "BN_MODES",
    "METHODS",
    "EvolutionSearch",
    "RandomSearch",
    "UniformSearch",
    "evolution_search",
    "random_search",
    "uniform_search",
    "ArchScorer",
    "AutoSlim",
    "Result",
    "Score",
    "SupernetMethod",
    "arch_costs",
    "greedy_slim",
    "shrink_candidates",
]
