"""`OneBudgetSearch`: what TAS and ProxylessNAS share, methods that learn architecture
parameters for one budget per fit (the budget is in their loss) and derive one arch from them.

A subclass sets ``name`` and the attributes ``epochs``, ``lr``, ``weight_decay``, ``seed``,
``run_dir``, ``progress``, ``trainer_options``, and implements ``make_step(supernet, arch_data,
budget, steps_per_epoch)`` (which sets ``arch_params`` and ``budget``) and ``result(scorer)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slimnas.cost.budget import Budget
from slimnas.errors import ConfigError
from slimnas.methods.base import method_trainer
from slimnas.methods.result import Result


class CyclingBatches:
    """The next batch of a loader on every `next` call, starting its next epoch when one ends;
    its place is the loader's own (``state_dict`` / ``load_state_dict``), so a resumed step
    reads on where the interrupted one stopped. The held-out batches of the architecture
    steps of TAS and ProxylessNAS."""

    def __init__(self, loader: Any):
        self.loader = loader
        self._batches = None

    def next(self):
        if self._batches is None:
            self._batches = iter(self.loader)
        batch = next(self._batches, None)
        if batch is None:  # the loader's epoch is exhausted: its next one
            self._batches = iter(self.loader)
            batch = next(self._batches)
        return batch

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: Any) -> None:
        """Move the loader to ``state``; the next batch comes from there."""
        self.loader.load_state_dict(state)
        self._batches = None


class OneBudgetSearch:
    """``fit`` trains the weights and the architecture parameters for one budget through the
    `Trainer` (resumable in ``run_dir``); ``search`` returns the derived arch's `Result`."""

    name = "one-budget search"
    arch_params: Any = None
    budget: Budget | None = None

    def fit(self, supernet, train: Any, arch_data: Any, budget: Budget | str):
        """Search ``budget``: weights on ``train``, architecture on ``arch_data`` (two
        `BatchLoader`s over a split of the training data). Changes the supernet's weights;
        returns the method."""
        if not isinstance(budget, Budget):
            budget = Budget.parse(budget, supernet.space)
        budget.check_feasible(supernet.space)
        step = self.make_step(supernet, arch_data, budget, len(train))
        trainer = method_trainer(self, supernet, train, step, weight_decay=self.weight_decay)
        try:
            trainer.fit()
        finally:
            supernet.activate(supernet.max_arch())
        return self

    def search(self, budgets: Sequence[Budget | str] | None = None, scorer=None) -> list[Result]:
        """The derived arch of the fitted budget (one `Result`); ``scorer`` scores it.

        Raises:
            ConfigError: not fitted, or ``budgets`` names another budget than the fitted one
                (these methods learn one budget per fit).
        """
        if self.arch_params is None or self.budget is None:
            raise ConfigError(f"{self.name}: call fit(...) before search(...)")
        for b in [budgets] if isinstance(budgets, (str, Budget)) else budgets or []:
            text = b.text if isinstance(b, Budget) else b
            if text.strip() != self.budget.text:
                raise ConfigError(
                    f"{self.name} was fitted for {self.budget.text}, not {text}; it searches "
                    "one budget per fit: fit again for it"
                )
        return [self.result(scorer)]

    def make_step(self, supernet, arch_data, budget: Budget, steps_per_epoch: int):
        raise NotImplementedError

    def result(self, scorer=None, method: str | None = None) -> Result:
        raise NotImplementedError


__all__ = ["CyclingBatches", "OneBudgetSearch"]
