"""`OneBudgetMethod`: what TAS and ProxylessNAS share — methods whose loss holds the budget, so
that each budget is one search: a copy of the fitted weights trained together with fresh
architecture logits, resumable in ``<folder>/<budget>/``, then one arch derived from the logits
and scored on the held-out images with the search's own weights (BatchNorm recalibrated). Those
weights (``<folder>/<budget>/final/``) are the ones the arch inherits (`weights`): exports, the
report's inherited accuracy and ``retrain.init = "inherit"`` use the network that chose it.

A subclass implements ``make_step(supernet, arch_data, budget, steps_per_epoch, epochs)`` (an
`ArchStep`), ``result(step, budget, scorer)`` and ``loaders(setup)``; it may warm the weights
up once before the budgets' searches (``warm_up``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from slimnas.cost.budget import Budget
from slimnas.errors import ConfigError
from slimnas.methods.base import Method
from slimnas.methods.result import Result
from slimnas.methods.setup import Setup, epoch_means, load_weights, read_json
from slimnas.run_dir import budget_slug
from slimnas.train import buffers_kept, distributed
from slimnas.train.checkpoint import checkpoint_dirs
from slimnas.weights import load_weights as load_model_weights


class OneBudgetMethod(Method):
    """``fit(supernet, setup)`` keeps the fresh ``supernet`` (after `warm_up`); ``search(budgets)``
    runs one search per budget (module doc). Options need an ``epochs`` field (None: the
    recipe's epochs)."""

    shared_supernet: ClassVar[bool] = False
    # results.json key of the per-epoch traces of the searches (`artifacts`), and their columns.
    trace_key: ClassVar[str] = ""
    trace_columns: ClassVar[tuple[str, ...]] = ()
    training: ClassVar[str] = ""  # what the log line says the search trains with

    def fit(self, supernet, setup: Setup) -> OneBudgetMethod:
        """Keep ``supernet`` (untrained, or trained to start from) for the searches; each
        budget's search trains a copy of it. Returns the method."""
        self.setup = setup
        self.supernet = self.warm_up(supernet, setup)
        self.steps: dict[str, Any] = {}  # per budget text, the step of its search (this process)
        self.trained: dict[str, Any] = {}  # per budget text, its search's weights (`weights`)
        return self

    def attach(self, supernet, setup: Setup) -> OneBudgetMethod:
        return self.fit(supernet, setup)

    def warm_up(self, supernet, setup: Setup):
        """The weights every budget's search starts from; default ``supernet`` as it is."""
        return supernet

    def recipe(self, setup: Setup) -> Any:
        """The recipe of each search: ``setup.recipe`` with the options' ``epochs``."""
        epochs = self.options.epochs or setup.recipe.epochs
        return dataclasses.replace(setup.recipe, epochs=epochs)

    def folder(self, budget: Budget) -> Path | None:
        return None if self.setup.folder is None else self.setup.folder / budget_slug(budget.text)

    def search(self, budgets: Sequence[Budget | str]) -> list[Result]:
        """One search per budget (resumable; a finished one is read back)."""
        return [self.search_one(budget) for budget in self.budgets(budgets)]

    def search_one(self, budget: Budget) -> Result:
        setup, folder = self.setup, self.folder(budget)
        done = read_json(None if folder is None else folder / "result.json")
        if done is not None:
            return Result.from_dict(done)
        if distributed.is_distributed():
            raise ConfigError(f"{self.name} runs in one process; run it without torchrun")
        supernet = copy.deepcopy(self.supernet)
        recipe = self.recipe(setup)
        train, arch_data = self.loaders(setup)
        step = self.make_step(supernet, arch_data, budget, len(train), recipe.epochs)
        self.steps[budget.text] = step
        trainer = setup.trainer(supernet, train, step, folder, recipe)
        try:
            setup.train(trainer, f"{self.name} {budget.text}", self.training, recipe)
        finally:
            supernet.activate(supernet.max_arch())
        if folder is not None and distributed.is_main():  # before result.json: it marks the end
            supernet.save(folder / "final")
        with buffers_kept(supernet):  # scoring recalibrates BatchNorm; keep the trained statistics
            result = self.result(step, budget, setup.scorer(supernet, "recalibrate"))
        supernet.activate(supernet.max_arch())
        self.trained[budget.text] = supernet
        if folder is not None:
            setup.write_json(folder / "result.json", result.to_dict())
        return result

    def weights(self, budget: str | None = None):
        """The weights ``budget``'s search trained (each budget's search trains its own copy):
        its ``final/``, else the newest checkpoint of its folder (a search finished before
        ``final/`` was written). None when that search is nowhere to be found, or for no
        budget: the run's shared supernet then."""
        if budget is None or self.supernet is None:
            return None
        if budget in self.trained:
            return self.trained[budget]
        folder = None if self.setup.folder is None else self.setup.folder / budget_slug(budget)
        if folder is None or not (folder / "result.json").exists():
            return None
        supernet = copy.deepcopy(self.supernet)
        if (folder / "final" / "supernet.json").exists():
            load_weights(supernet, folder / "final")
        elif checkpoint_dirs(folder):
            load_model_weights(supernet, folder)  # the last epoch's checkpoint: the end weights
            supernet.activate(supernet.max_arch())
        else:
            return None
        self.trained[budget] = supernet
        return supernet

    def artifacts(
        self, setup: Setup, results: Sequence[Result], budgets: Sequence[Budget]
    ) -> dict[str, Any]:
        """``{trace_key: {"<name> <budget>": per-epoch means of the search's metrics.csv}}``."""
        traces = {}
        for result in results:
            path = None if setup.folder is None else setup.folder / budget_slug(result.budget)
            if path is not None and (path / "metrics.csv").exists():
                means = epoch_means(path / "metrics.csv", self.trace_columns)
                traces[f"{self.name} {result.budget}"] = means
        return {self.trace_key: traces} if traces else {}

    # ------------------------------------------------------------------- the subclass's
    def loaders(self, setup: Setup) -> tuple[Any, Any]:
        """The loaders of the weights and of the architecture."""
        raise NotImplementedError

    def make_step(self, supernet, arch_data, budget: Budget, steps_per_epoch: int, epochs: int):
        raise NotImplementedError

    def new_arch_params(self, supernet, build: Any) -> tuple[Any, torch.Generator]:
        """Fresh architecture logits ``build(space, generator)`` on the supernet's device, and
        the generator that drew them (seeded by the search seed; the step draws on with it)."""
        generator = torch.Generator().manual_seed(self.setup.seed if self.setup else 0)
        arch_params = build(supernet.space, generator)
        return arch_params.to(next(supernet.parameters()).device), generator

    def derive(self, arch_params, budget: Budget):
        """The arch of the learned ``arch_params`` that meets ``budget`` and the steps taken
        to make it fit."""
        raise NotImplementedError

    def result_info(self, step) -> dict[str, Any]:
        """The method's own facts of a fitted search, for `Result.info`."""
        return {}

    def result(self, step, budget: Budget, scorer=None) -> Result:
        """The `Result` of a fitted search: the derived arch (argmax, stepped down to fit when
        it breaks the budget), its probabilities, and the adjustments; scored by ``scorer``."""
        arch_params = step.arch
        space = arch_params.space
        arch, steps = self.derive(arch_params, budget)
        info = {
            **self.result_info(step),
            "probabilities": arch_params.table(),
            "argmax_cost": budget.cost(space, arch_params.argmax()),
            "adjusted": steps,
        }
        if steps:
            info["note"] = f"argmax broke the budget; {len(steps)} unit(s) stepped down to fit"
        score = scorer.score(arch) if scorer is not None else None
        return Result.of(self.name, budget, space, arch, score, **info)


__all__ = ["OneBudgetMethod"]
