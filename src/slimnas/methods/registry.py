"""The methods by name, as classes with the common ``fit`` / ``attach`` / ``search`` API.

The baselines of AutoSlim's comparisons (uniform width multiplier, random search, evolutionary
search) are thin classes around the functions of `slimnas.methods.baselines`, so that every
method is called the same way:

    results = RandomSearch(samples=200).attach(supernet, heldout).search(["macs<=50%"])
"""

from __future__ import annotations

from collections.abc import Sequence

from slimnas.cost.budget import Budget
from slimnas.methods.autoslim import AutoSlim
from slimnas.methods.base import SupernetMethod
from slimnas.methods.baselines import evolution_search, random_search, uniform_search
from slimnas.methods.joslim import Joslim
from slimnas.methods.result import Result


class UniformSearch(SupernetMethod):
    """The largest uniform width multiplier that meets each budget (scored, not searched)."""

    name = "uniform"

    def search(self, budgets: Sequence[Budget | str]) -> list[Result]:
        space = self.search_space()
        return uniform_search(space, self.budgets(budgets), self.scorer)


class RandomSearch(SupernetMethod):
    """``samples`` random archs near each budget, the best on held-out data wins."""

    name = "random"

    def __init__(self, *, samples: int = 100, search_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.samples = samples
        self.search_seed = search_seed

    def search(self, budgets: Sequence[Budget | str]) -> list[Result]:
        space = self.search_space()
        return random_search(
            space,
            self.scorer,
            self.budgets(budgets),
            samples=self.samples,
            seed=self.search_seed,
            progress=self.progress,
        )


class EvolutionSearch(SupernetMethod):
    """Budget-aware evolution (mutation + crossover) scored on held-out data."""

    name = "evolution"

    def __init__(
        self, *, population: int = 32, generations: int = 10, search_seed: int = 0, **kwargs
    ):
        super().__init__(**kwargs)
        self.population = population
        self.generations = generations
        self.search_seed = search_seed

    def search(self, budgets: Sequence[Budget | str]) -> list[Result]:
        space = self.search_space()
        return evolution_search(
            space,
            self.scorer,
            self.budgets(budgets),
            population=self.population,
            generations=self.generations,
            seed=self.search_seed,
            progress=self.progress,
        )


METHODS: dict[str, type[SupernetMethod]] = {
    "autoslim": AutoSlim,
    "joslim": Joslim,
    "uniform": UniformSearch,
    "random": RandomSearch,
    "evolution": EvolutionSearch,
}

__all__ = ["METHODS", "EvolutionSearch", "RandomSearch", "UniformSearch"]
