"""`SupernetMethod`: what the methods that search a trained slimmable supernet share.

``fit(supernet, train, heldout)`` trains the supernet through the `Trainer` with the method's
`training_step` (by default the sandwich rule with in-place distillation, US-Nets §3, arXiv
1903.05134), then prepares the scorer of archs on the held-out batches; ``attach(supernet,
heldout)`` skips the training for a supernet trained already (the pipeline trains one and shares
it between methods). ``search(budgets)`` is each method's own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from slimnas.cost.budget import Budget
from slimnas.errors import ConfigError
from slimnas.methods.result import Result
from slimnas.methods.scoring import ArchScorer
from slimnas.space.space import Space
from slimnas.train import StepFn, Trainer, checkpoint_dirs, sandwich_step


def method_trainer(method: Any, model, train: Any, step: StepFn, **options) -> Trainer:
    """The `Trainer` a method's ``fit`` runs: ``method``'s ``epochs``, ``lr``, ``run_dir``,
    ``seed``, ``progress`` and ``trainer_options`` (plus ``options``), resuming when ``run_dir``
    holds checkpoints already. Serves `SupernetMethod` and `OneBudgetSearch`."""
    resume = method.run_dir is not None and bool(checkpoint_dirs(method.run_dir))
    return Trainer(
        model,
        train,
        step_fn=step,
        epochs=method.epochs,
        lr=method.lr,
        run_dir=method.run_dir,
        seed=method.seed,
        progress=method.progress,
        resume=resume,
        **options,
        **method.trainer_options,
    )


class SupernetMethod:
    """Base of the methods that search a slimmable supernet.

    Args:
        epochs: supernet training epochs (`fit` only).
        lr: peak learning rate of the supernet training.
        sandwich_n: archs per step of the sandwich rule.
        distill: in-place distillation from the max arch.
        label_smoothing: of the max arch's loss.
        run_dir: where the supernet training checkpoints; an interrupted `fit` resumes there.
        seed: seeds the supernet training and the sandwich sampling.
        bn: ``"batch"`` or ``"recalibrate"`` BatchNorm statistics when scoring archs.
        bn_batches: ``"recalibrate"``: training batches per scored arch.
        progress: progress bars (quiet when stderr is not a terminal).
        trainer_options: further `Trainer` keyword arguments (weight_decay, schedule, ...).
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        *,
        epochs: int = 30,
        lr: float = 0.1,
        sandwich_n: int = 4,
        distill: bool = True,
        label_smoothing: float = 0.1,
        run_dir: str | Path | None = None,
        seed: int = 0,
        bn: str = "batch",
        bn_batches: int = 8,
        progress: bool = True,
        trainer_options: dict[str, Any] | None = None,
    ):
        self.epochs = epochs
        self.lr = lr
        self.sandwich_n = sandwich_n
        self.distill = distill
        self.label_smoothing = label_smoothing
        self.run_dir = run_dir
        self.seed = seed
        self.bn = bn
        self.bn_batches = bn_batches
        self.progress = progress
        self.trainer_options = dict(trainer_options or {})
        self.supernet = None
        self.scorer: ArchScorer | None = None

    def training_step(self, supernet, train: Any, heldout: Sequence) -> StepFn:
        """The step `fit` trains the supernet with: the sandwich rule. A method that trains its
        supernet differently (Joslim chooses the archs) overrides this, not `fit`."""
        generator = torch.Generator().manual_seed(self.seed)
        return sandwich_step(
            supernet, self.sandwich_n, generator, self.label_smoothing, self.distill
        )

    def fit(self, supernet, train: Any, heldout: Iterable) -> SupernetMethod:
        """Train ``supernet`` on ``train`` (a `BatchLoader`) with `training_step`, then
        `attach` it with ``heldout`` batches for scoring. Changes the supernet's weights."""
        heldout = list(heldout)
        step = self.training_step(supernet, train, heldout)
        method_trainer(self, supernet, train, step).fit()
        calibration = list(itertools.islice(iter(train), self.bn_batches))
        return self.attach(supernet, heldout, calibration)

    def attach(
        self, supernet, heldout: Iterable, calibration: Sequence | None = None
    ) -> SupernetMethod:
        """Use the trained ``supernet``; archs are scored on the ``heldout`` batches (held-out
        *training* data), with BatchNorm recalibrated on ``calibration`` when ``bn`` says so."""
        self.supernet = supernet
        self.scorer = ArchScorer(supernet, list(heldout), self.bn, calibration)
        return self

    def search_space(self) -> Space:
        if self.supernet is None or self.scorer is None:
            raise ConfigError(f"{self.name}: call fit(...) or attach(...) before search(...)")
        return self.supernet.space

    def budgets(self, budgets: Sequence[Budget | str]) -> list[Budget]:
        """``budgets`` as `Budget`s (``%`` limits relative to the max arch), each feasible."""
        space = self.search_space()
        if isinstance(budgets, (str, Budget)):
            budgets = [budgets]
        parsed = [b if isinstance(b, Budget) else Budget.parse(b, space) for b in budgets]
        for budget in parsed:
            budget.check_feasible(space)
        return parsed

    def search(self, budgets: Sequence[Budget | str]) -> list[Result]:
        raise NotImplementedError


__all__ = ["SupernetMethod", "method_trainer"]
