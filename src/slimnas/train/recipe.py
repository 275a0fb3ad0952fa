"""A `Trainer` from a training recipe: the settings of a ``[train]``, ``[supernet]`` or
``[retrain]`` config section (`slimnas.config.RecipeConfig`), so that every command builds its
trainers the same way."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from slimnas.train.step import StepFn
from slimnas.train.trainer import Trainer


def trainer_from_recipe(
    model: nn.Module,
    loader: Any,
    recipe: Any,
    *,
    step_fn: StepFn,
    run_dir: str | Path | None,
    resume: bool,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
    fallback: bool = True,
) -> Trainer:
    """A `Trainer` for ``model`` on ``loader`` with the optimizer, schedule (warm-up given in
    epochs), checkpointing and seed of ``recipe``; the step carries its own loss (label
    smoothing included). On resume a damaged newest checkpoint is set aside (``*.corrupt``,
    with a warning naming it) and the newest good one is used (``fallback``)."""
    return Trainer(
        model,
        loader,
        step_fn=step_fn,
        optimizer=recipe.optimizer,
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
        no_decay_bn_bias=recipe.no_decay_bn_bias,
        schedule=recipe.schedule,
        warmup_steps=round(recipe.warmup_epochs * len(loader)),
        epochs=recipe.epochs,
        grad_clip=recipe.grad_clip,
        run_dir=run_dir,
        checkpoint_every=recipe.checkpoint_every,
        keep_last=recipe.keep_last,
        seed=recipe.seed,
        amp=recipe.amp,
        channels_last=recipe.channels_last,
        tensorboard=recipe.tensorboard,
        progress=progress,
        resume=resume,
        fallback=fallback,
        config=config,
    )


__all__ = ["trainer_from_recipe"]
