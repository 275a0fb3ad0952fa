"""The pruning baselines of "shrink a trained model" as methods: global L1-norm filter pruning
and Torch-Pruning, each on the run's model as given (``model.weights``), with no supernet
training. Their archs inherit the trained weights and are then fine-tuned by the retrain stage
like every other method's, so a run compares them at the same fine-tune compute.

    results = MagnitudePruning().fit(supernet, setup).search(["macs<=50%"])
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from slimnas.cost import macs
from slimnas.cost.budget import Budget
from slimnas.errors import ConfigError, PruningError
from slimnas.methods.base import Method, register
from slimnas.methods.base import Options as BaseOptions
from slimnas.methods.result import Result
from slimnas.methods.setup import Setup, read_json
from slimnas.pruning.magnitude import magnitude_arch, rank_by_filter_scores
from slimnas.pruning.torch_pruning import kept_channels, prune_with_torch_pruning
from slimnas.ranking.permute import permutable_units, permute_channels
from slimnas.settings import flag, integer
from slimnas.space.space import Space
from slimnas.space.units import Arch, ChannelUnit

log = logging.getLogger("slimnas.pipeline")
MAX_TRIES = 6  # Torch-Pruning runs per budget, each with a lower max_pruning_ratio


@register
class MagnitudePruning(Method):
    """Global L1-norm filter pruning (Li et al. 2017, §3.1, with per-layer normalisation; see
    `slimnas.pruning.magnitude`) of the model as it is: channels ranked by their filters'
    normalised L1 norm, the lowest removed across all layers until each budget holds."""

    name = "magnitude"
    shared_supernet = False
    trains = False

    def fit(self, supernet, setup: Setup) -> Method:
        """Rank ``supernet`` (the run's model, fresh or trained) by filter L1; no training."""
        rank_by_filter_scores(supernet)
        return self.attach(supernet, setup)

    def search(self, budgets: Sequence[Budget | str]) -> list[Result]:
        space = self.space()
        results = []
        for budget in self.budgets(budgets):
            arch = magnitude_arch(self.supernet, budget, rank=False)
            results.append(Result.of(self.name, budget, space, arch, self.scorer.score(arch)))
        return results

    def weights(self, budget: str | None = None):
        return self.supernet


@dataclass(frozen=True)
class TorchPruningOptions(BaseOptions):
    steps: int = integer(400, 1, "iterative steps over which channel sparsity grows to 1")
    global_pruning: bool = flag(True, "rank channel groups across layers (else layer by layer)")


@register
class TorchPruning(Method):
    """Torch-Pruning (Fang et al. 2023, DepGraph; `slimnas.pruning.torch_pruning`) group-L2
    pruning of the model as it is to each MACs budget, as its CIFAR benchmark does. Its channel
    counts become an arch of the space (it rounds to the space's divisor and keeps every layer
    at or above the space's smallest share), and its kept channels are moved to the front of a
    copy of the model, so the arch exports exactly Torch-Pruning's pruned model (up to
    BatchNorm recalibration) when every count is a choice of the space (`_arch_of` says what
    happens otherwise). Needs the
    ``torch-pruning`` package (``pip install 'slimnas[prune]'``)."""

    name = "torch_pruning"
    shared_supernet = False
    trains = False
    Options = TorchPruningOptions

    def __init__(self, options=None, **changes):
        super().__init__(options, **changes)
        self._pruned: dict[str, object] = {}  # budget text -> the supernet with its channels

    def check(self, space: Space, budgets: Sequence[Budget]) -> None:
        from slimnas.pruning.torch_pruning import _torch_pruning

        _torch_pruning()  # ConfigError naming the extra when it is missing
        for budget in budgets:
            if budget.metric != "macs":
                raise ConfigError(
                    f"torch_pruning prunes to a MACs target; budget {budget.text!r} is not one "
                    "(leave torch_pruning out, or give macs budgets)"
                )

    def fit(self, supernet, setup: Setup) -> Method:
        """Keep the model as it is (``supernet`` at its max arch); the per-budget pruned copies
        of a finished search are rebuilt from ``search/torch_pruning.kept.json``."""
        self.attach(supernet, setup)
        self._pruned = {}
        saved = read_json(setup.file("kept"))
        for budget, kept in (saved or {}).items():
            try:
                self._pruned[budget] = self._reordered(_arch_of(self.space(), kept)[1])
            except PruningError:  # not an arch of this space: search prunes it again
                continue
        return self

    def search(self, budgets: Sequence[Budget | str]) -> list[Result]:
        space = self.space()
        saved = read_json(self.setup.file("kept")) or {}
        failed = {}
        results = []
        for budget in self.budgets(budgets):
            kept = saved.get(budget.text)
            try:
                if kept is None:
                    kept = self._prune(budget)
                arch, trimmed = _arch_of(space, kept)
                saved[budget.text] = kept
                self.setup.write_json(self.setup.file("kept"), saved)
            except PruningError as err:  # the report says why the row is missing
                log.warning("torch_pruning, %s: %s", budget.text, err)
                failed[budget.text] = str(err)
                continue
            supernet = self._pruned.get(budget.text) or self._reordered(trimmed)
            self._pruned[budget.text] = supernet
            lowered = {n: [len(kept[n]), arch[n]] for n in trimmed if arch[n] != len(kept[n])}
            score = self.setup.scorer(supernet).score(arch)
            results.append(Result.of(self.name, budget, space, arch, score, lowered=lowered))
        self.setup.write_json(self.setup.file("failed"), failed)
        return results

    def artifacts(
        self, setup: Setup, results: Sequence[Result], budgets: Sequence[Budget]
    ) -> dict[str, Any]:
        """The budgets Torch-Pruning could not prune to, with why (the report's "missing")."""
        failed = read_json(setup.file("failed")) or {}
        return {"missing": {self.name: failed}} if failed else {}

    def weights(self, budget: str | None = None):
        if budget is None:
            return self.supernet
        if budget not in self._pruned:
            raise ConfigError(f"torch_pruning has not searched budget {budget!r}; search first")
        return self._pruned[budget]

    # ---------------------------------------------------------------------------- helpers
    def _prune(self, budget: Budget) -> dict[str, list[int]]:
        """Torch-Pruning's kept channels per narrowed unit at ``budget``."""
        space, supernet = self.space(), self.supernet
        original = supernet.export(space.max_arch()).eval()
        example = next(iter(self.setup.calibration()))[0][:1]
        channel_units = [u for u in space.searchable.values() if isinstance(u, ChannelUnit)]
        divisor = math.gcd(*(c for u in channel_units for c in u.choices))
        floor = max(u.choices[0] / u.max_channels for u in channel_units)
        # Torch-Pruning checks max_pruning_ratio before a step, so one step can overshoot it;
        # lowered by 5 points a try until no layer ends below the space's smallest choice.
        for attempt in range(MAX_TRIES):
            pruned = prune_with_torch_pruning(
                original,
                example.to(next(original.parameters()).device),
                budget.limit / macs(space, space.max_arch()),
                global_pruning=self.options.global_pruning,
                iterative_steps=self.options.steps,
                round_to=divisor,
                max_pruning_ratio=1.0 - floor - 0.05 * attempt,
                progress=self.setup.progress,
            )
            kept = kept_channels(original, pruned.model, space)
            narrow = [n for n, k in kept.items() if len(k) < space.units[n].choices[0]]
            if not narrow:
                return kept
            log.info("torch_pruning: %s below its smallest choice; trying again", narrow[0])
        raise PruningError(
            f"Torch-Pruning keeps cutting unit {narrow[0]!r} below its smallest choice "
            f"{space.units[narrow[0]].choices[0]} (max_pruning_ratio lowered {MAX_TRIES} times)"
        )

    def _reordered(self, kept: dict[str, list[int]]):
        """A copy of the model whose units hold the ``kept`` channels (per unit, as `_arch_of`
        trims them) first: the function is the same, and the arch of `_arch_of` exports
        exactly the pruned model."""
        space = self.space()
        permutable = {u.name for u in permutable_units(space)[0]}
        orders = {}
        for name, indices in kept.items():
            if name not in permutable:
                raise PruningError(f"Torch-Pruning narrowed unit {name!r}, which the space keeps")
            chosen = set(indices)
            rest = [i for i in range(space.units[name].max_channels) if i not in chosen]
            orders[name] = torch.tensor(indices + rest)
        supernet = copy.deepcopy(self.supernet)
        permute_channels(supernet.model, space, orders)
        return supernet


def _arch_of(space: Space, kept: dict[str, list[int]]) -> tuple[Arch, dict[str, list[int]]]:
    """The arch of Torch-Pruning's channel counts (every other unit at its default), and the
    channels it keeps per unit.

    A count that is not one of the unit's choices (a space coarser than Torch-Pruning's
    ``round_to``) is lowered to the largest choice below it, keeping the unit's leading kept
    channels (the model is importance-ranked by ``model.rank``): cheaper than Torch-Pruning's
    model, never over the budget; the result's info lists each such unit.
    """
    arch, trimmed = {}, {}
    for name in kept:
        if name not in space.searchable:
            raise PruningError(
                f"Torch-Pruning narrowed unit {name!r}, which the space keeps at full width"
            )
    for name, unit in space.searchable.items():
        if name not in kept:
            arch[name] = unit.default
            continue
        lower = [c for c in unit.choices if c <= len(kept[name])]
        if not lower:
            raise PruningError(
                f"Torch-Pruning left unit {name!r} {len(kept[name])} channels, fewer than its "
                f"smallest choice {unit.choices[0]}"
            )
        arch[name] = lower[-1]
        trimmed[name] = sorted(kept[name])[: lower[-1]]
    return Arch(arch), trimmed


__all__ = ["MagnitudePruning", "TorchPruning"]
