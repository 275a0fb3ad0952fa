"""Search methods on one supernet: AutoSlim and the baselines it is compared with.

method = AutoSlim(epochs=30).fit(supernet, train_loader, heldout_batches)
results = method.search(["macs<=20M", "macs<=50%"])
small = supernet.export(results[0].arch)
"""

from slimnas.methods.autoslim import AutoSlim, greedy_slim, shrink_candidates
from slimnas.methods.base import SupernetMethod
from slimnas.methods.result import Result, arch_costs
from slimnas.methods.scoring import BN_MODES, ArchScorer, Score

__all__ = [
    "BN_MODES",
    "ArchScorer",
    "AutoSlim",
    "Result",
    "Score",
    "SupernetMethod",
    "arch_costs",
    "greedy_slim",
    "shrink_candidates",
]
