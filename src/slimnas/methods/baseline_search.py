"""The baselines of AutoSlim's comparisons as methods: the uniform width multiplier, random
search and evolutionary search, each on the run's sandwich-rule supernet (the functions are in
`slimnas.methods.baselines`).

    results = RandomSearch(samples=200).attach(supernet, setup).search(["macs<=50%"])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slimnas.cost.budget import Budget
from slimnas.methods.base import Method, register
from slimnas.methods.base import Options as BaseOptions
from slimnas.methods.baselines import random_search, uniform_search
from slimnas.methods.evolution import STARTS, evolution_search
from slimnas.methods.result import Result
from slimnas.methods.scoring import Score
from slimnas.methods.setup import Setup
from slimnas.settings import choice, integer
from slimnas.space.units import Arch


@register
class UniformSearch(Method):
    """The largest uniform width multiplier that meets each budget (scored, not searched)."""

    name = "uniform"
    default = True

    def search(self, budgets: Sequence[Budget | str]) -> list[Result]:
        return uniform_search(self.space(), self.budgets(budgets), self.scorer)


@dataclass(frozen=True)
class RandomOptions(BaseOptions):
    samples: int = integer(100, 1, "archs scored per budget")


@register
class RandomSearch(Method):
    """``samples`` random archs near each budget, the best on held-out data wins; every arch it
    scored goes to ``search/random.scored.json`` (the two-stage baseline's front). The scores
    are kept in ``search/random.state.json`` as they come, so a killed search resumes."""

    name = "random"
    default = True
    Options = RandomOptions
    legacy_prefix = "random"

    def search(self, budgets: Sequence[Budget | str]) -> list[Result]:
        scored: dict[Arch, Score] = {}
        results = random_search(
            self.space(),
            self.scorer,
            self.budgets(budgets),
            samples=self.options.samples,
            seed=self.setup.seed,
            progress=self.setup.progress,
            scored=scored,
            state_path=self.setup.file("state"),
        )
        entries = [
            {"arch": dict(a), "accuracy": s.accuracy, "loss": s.loss, "samples": s.samples}
            for a, s in scored.items()
        ]
        self.setup.write_json(self.setup.file("scored"), entries, indent=None)
        return results

    def artifacts(
        self, setup: Setup, results: Sequence[Result], budgets: Sequence[Budget]
    ) -> dict[str, Any]:
        """None of its own; but a run searched before this method saved the archs it scored
        gets them back by searching again (same seed and scores, so the same archs), for the
        methods whose fronts compare against them."""
        path = setup.file("scored")
        if path is not None and not path.exists() and setup.shared is not None:
            self.attach(setup.shared(), setup).search(budgets)
        return {}


def read_scored(entries: Sequence[dict[str, Any]]) -> dict[Arch, Score]:
    """The archs of a ``random.scored.json`` with their held-out scores."""
    return {Arch(e["arch"]): Score(e["accuracy"], e["loss"], e["samples"]) for e in entries}


@dataclass(frozen=True)
class EvolutionOptions(BaseOptions):
    population: int = integer(32, 2, "population size")
    generations: int = integer(10, 1, "generations")
    start: str = choice(
        "random",
        STARTS,
        "first generation: sampled archs, or the uniform-width arch of the budget plus "
        "sampled ones (never worse than uniform on the search score)",
    )


@register
class EvolutionSearch(Method):
    """Budget-aware evolution (mutation + crossover) scored on held-out data; its progress is
    kept in ``search/evolution.state.json`` after every generation, so a killed search
    resumes."""

    name = "evolution"
    default = True
    Options = EvolutionOptions
    legacy_prefix = "evolution"
    legacy_keys = {"population": "population", "generations": "generations"}

    def search(self, budgets: Sequence[Budget | str]) -> list[Result]:
        return evolution_search(
            self.space(),
            self.scorer,
            self.budgets(budgets),
            population=self.options.population,
            generations=self.options.generations,
            seed=self.setup.seed,
            progress=self.setup.progress,
            state_path=self.setup.file("state"),
            start=self.options.start,
        )


__all__ = ["EvolutionSearch", "RandomSearch", "UniformSearch", "read_scored"]
