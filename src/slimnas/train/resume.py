"""Resuming a `Trainer` from the newest good checkpoint of its run directory.

Every input of a step comes back: model, optimizer, scheduler, float16 loss scale, the step's own
state (a sampling generator), the data position and every RNG, so a resumed run continues
bit-identically on the CPU. Under DDP rank 0 sets damaged checkpoints aside first, so that every
rank reads the same one.
"""

from __future__ import annotations

import logging
from typing import Any

from slimnas.errors import CheckpointError
from slimnas.train import distributed
from slimnas.train.checkpoint import checkpoint_dirs, load_latest, set_aside
from slimnas.train.rng import set_rng_state

log = logging.getLogger("slimnas.train.trainer")


def resume_trainer(trainer: Any, fallback: bool) -> None:
    """Load the newest checkpoint of ``trainer.run_dir`` into ``trainer`` (older good ones when
    ``fallback``); nothing when there is none. Changes the trainer and its model, optimizer,
    scheduler, loader and step function.

    Raises:
        CheckpointError: no readable checkpoint, the ranks disagree, or the checkpoint does not
            fit this model, data or batch size (one line saying what to do).
    """
    if not checkpoint_dirs(trainer.run_dir):
        log.info("no checkpoint in %s: starting a fresh run", trainer.run_dir)
        return
    # Rank 0 sets damaged checkpoints aside before the other ranks look, so that every rank
    # reads the same one; each rank loads it for itself (and meets rank 0's error, if any).
    checkpoint, error = None, None
    if distributed.is_main():
        try:
            checkpoint = load_latest(trainer.run_dir, fallback=fallback)
        except CheckpointError as err:
            error = err
        for bad in checkpoint.skipped if checkpoint else ():
            log.warning("set aside unreadable checkpoint %s", set_aside(bad))
    distributed.barrier()
    if error is not None:
        raise error
    if checkpoint is None:
        checkpoint = load_latest(trainer.run_dir, fallback=fallback)
    if not distributed.agree(checkpoint.path.name):
        raise CheckpointError(
            f"the ranks read different checkpoints of {trainer.run_dir} (this one "
            f"{checkpoint.path.name}); every rank must see the same run_dir"
        )
    state, where = checkpoint.state, checkpoint.path
    try:
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        if trainer.scaler and "scaler" in state:
            trainer.scaler.load_state_dict(state["scaler"])
        if "step_fn" in state and callable(getattr(trainer.step_fn, "load_state_dict", None)):
            trainer.step_fn.load_state_dict(state["step_fn"])
        trainer.loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        trainer.step = int(state["step"])
    except (KeyError, ValueError, RuntimeError, CheckpointError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        raise CheckpointError(
            f"cannot resume from {where}: {first}; resume with the same model, data and "
            "step, or start a fresh run in another run_dir"
        ) from None
    expected = trainer.loader.epoch * len(trainer.loader) + trainer.loader.position
    if expected != trainer.step:
        raise CheckpointError(
            f"cannot resume from {where}: step {trainer.step} but the loader is at batch "
            f"{expected}; resume with the same data and batch size"
        )
    saved = state.get("settings", {})
    changed = {k: (saved.get(k), v) for k, v in trainer.settings.items() if saved.get(k) != v}
    if changed:
        log.warning("resuming %s with changed settings (saved, now): %s", where, changed)
    trainer.last_checkpoint = where
    trainer._saved_step = trainer.step
    log.info("resumed %s at step %d of %d", where, trainer.step, trainer.total_steps)
