"""`Trainer`: the one training loop of slimnas, for supernets and for the models they find.

Methods do not write loops; they give the Trainer a step (`slimnas.train.step`). The Trainer owns
everything around it: the optimizer (SGD with Nesterov momentum, or AdamW), the per-step LR
schedule with warm-up, gradient clipping, mixed precision on CUDA, the non-finite-loss guard,
``metrics.csv``, the progress bar, and atomic checkpoints from which a run resumes *exactly*:
on the CPU with deterministic settings, a run stopped or killed at any step and resumed ends with
weights bit-identical to an uninterrupted run's. That needs every input of a step restored: the
model, optimizer and scheduler states, the step count, every RNG (`rng`), the step's own state
(a sampling generator) and the data position (`BatchLoader.state_dict`, which also fixes the
order and augmentation of every later batch).

Under ``torchrun`` (`slimnas.train.distributed`) every rank runs this loop on its shard of each
global batch; after a step's backward passes the gradients of all ranks are averaged in one
collective, so that the optimizer step is the one a single process with the global batch would
take. Rank 0 writes ``metrics.csv`` (and, optionally, TensorBoard events) and the checkpoints;
every rank resumes from them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from slimnas.data.iterable import as_batch_loader, model_device
from slimnas.errors import ConfigError, SlimnasError
from slimnas.train import distributed
from slimnas.train.checkpoint import (
    checkpoint_dirs,
    checkpoint_path,
    save_checkpoint,
)
from slimnas.train.memory_format import channels_last_batch, to_channels_last
from slimnas.train.metrics_log import MetricsLog, summary_writer_class
from slimnas.train.optim import build_optimizer, build_schedule
from slimnas.train.resume import resume_trainer
from slimnas.train.rng import rng_state
from slimnas.train.step import StepFn, plain_step

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"


class TrainingError(SlimnasError):
    """Training cannot go on: a loss or the gradients became NaN or infinite."""


class Trainer:
    """Trains ``model`` on ``loader`` with ``step_fn`` for ``epochs``, checkpointing in ``run_dir``.

    Seed the global RNGs (or pass the same ``seed`` to model building) *before* building the
    model if its initialisation must be reproducible; ``seed`` here seeds what comes after
    (dropout, a step drawing from the global generator) on a fresh run. A resumed run takes
    every RNG state from its checkpoint instead.

    Under a process group of several ranks (`distributed.init_from_env`), build the loader of
    each rank with ``rank=`` and ``world_size=`` (its shard of every global batch) and give every
    rank the same settings and seeds: the Trainer starts every rank from rank 0's weights,
    averages the gradients of each step over the ranks, reports the mean loss and metrics, keeps
    rank 0's buffers (BatchNorm statistics) on every rank, and checks that the ranks' random
    states (the sandwich step's generator included) agree. Only rank 0 writes to ``run_dir``,
    which every rank must see (resume reads it on every rank).

    Args:
        model: the model (or `Supernet`) to train, on its device.
        loader: a `slimnas.data.BatchLoader` (anything with its ``epoch``, ``position``,
            ``set_epoch``, ``__len__``, ``state_dict`` and ``load_state_dict``, whose batches
            are on the model's device), or any re-iterable of ``(images, labels)`` batches with
            a length, such as a ``torch.utils.data.DataLoader``: that is wrapped as
            `slimnas.data.IterableBatches` (batches moved to the model's device, resumable;
            docs/data.md says how exactly). Under DDP, this rank's (its ``rank`` and
            ``world_size``, or its ``DistributedSampler``'s, must match the process group's).
        step_fn: the step (`slimnas.train.step`); default `plain_step(label_smoothing)`.
        optimizer: ``"sgd"`` or ``"adamw"``.
        lr: peak learning rate (after warm-up).
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 (SGD) or decoupled (AdamW) weight decay.
        no_decay_bn_bias: exempt BatchNorm weights and biases (1-D parameters) from decay.
        schedule: ``"cosine"``, ``"linear"`` or ``"constant"`` after warm-up, per step.
        warmup_steps: steps of linear warm-up from ``lr / warmup_steps`` to ``lr``.
        epochs: passes over ``loader``.
        label_smoothing: for the default step only (a step you pass carries its own).
        grad_clip: clip the global gradient norm to this value; None for no clipping.
        run_dir: where ``ckpt-NNNNNNNN/`` and ``metrics.csv`` go; None writes nothing.
        checkpoint_every: also checkpoint every this many steps (always at each epoch end).
        keep_last: checkpoints kept.
        seed: seeds python, numpy and torch on a fresh run; None leaves them.
        amp: mixed precision (bfloat16 where supported, else float16 with loss scaling); CUDA
            only.
        channels_last: lay out the model's 4-D weights (changed in place) and every batch's
            images channels-last (`slimnas.train.memory_format`): faster convolutions on CUDA,
            the same values on any device.
        progress: a tqdm bar, shown only when stderr is a terminal.
        tensorboard: also write every metrics row as TensorBoard scalars to
            ``run_dir/tensorboard`` (needs the tensorboard package).
        resume: continue from the newest checkpoint in ``run_dir`` (a fresh start when there is
            none).
        fallback: on resume, skip unreadable newest checkpoints (renamed ``*.corrupt``) and use
            the newest readable one, instead of stopping with `CheckpointError`.
        config: JSON-able settings to record in every checkpoint (a resolved run config).
    """

    def __init__(
        self,
        model: nn.Module,
        loader: Any,
        *,
        step_fn: StepFn | None = None,
        optimizer: str = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 5e-4,
        no_decay_bn_bias: bool = True,
        schedule: str = "cosine",
        warmup_steps: int = 0,
        epochs: int = 1,
        label_smoothing: float = 0.0,
        grad_clip: float | None = None,
        run_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        keep_last: int = 3,
        seed: int | None = 0,
        amp: bool = False,
        channels_last: bool = False,
        progress: bool = True,
        tensorboard: bool = False,
        resume: bool = False,
        fallback: bool = False,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {epochs}")
        loader = as_batch_loader(loader, model_device(model))
        if len(loader) < 1:
            raise ConfigError("the loader yields no batch; give it more data or a smaller batch")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        if keep_last < 1:
            raise ConfigError(f"keep_last must be at least 1, got {keep_last}")
        if grad_clip is not None and not grad_clip > 0:
            raise ConfigError(f"grad_clip must be positive or None, got {grad_clip}")
        if step_fn is not None and label_smoothing:
            raise ConfigError(
                "label_smoothing applies to the default step only; give it to your step_fn"
            )
        if resume and run_dir is None:
            raise ConfigError("resume needs the run_dir of the run to continue")
        if tensorboard:
            summary_writer_class()  # a missing package stops the run now, not at its first step
        distributed.check_loader_shard(loader)
        if distributed.is_distributed() and not hasattr(loader, "world_size"):
            log.warning(
                "the loader does not say which shard it yields (no rank and world_size, no "
                "DistributedSampler): under torchrun every rank may train on the same batches"
            )
        self.model = model
        self.loader = loader
        self.step_fn = step_fn if step_fn is not None else plain_step(label_smoothing)
        self.epochs = epochs
        self.total_steps = epochs * len(loader)
        self.grad_clip = grad_clip
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.keep_last = keep_last
        self.progress = progress
        self.tensorboard = tensorboard
        self.config = dict(config or {})
        self.channels_last = channels_last
        if channels_last:
            to_channels_last(model)
        self.optimizer = build_optimizer(
            model,
            optimizer,
            lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            no_decay_bn_bias=no_decay_bn_bias,
        )
        self.scheduler = build_schedule(self.optimizer, schedule, warmup_steps, self.total_steps)
        self._amp_dtype, self.scaler = self._mixed_precision(amp)
        # The settings a resumed run should share with the saved one (differences are logged).
        self.settings = {
            "optimizer": optimizer,
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "no_decay_bn_bias": no_decay_bn_bias,
            "schedule": schedule,
            "warmup_steps": warmup_steps,
            "epochs": epochs,
            "label_smoothing": label_smoothing,
            "grad_clip": grad_clip,
            "seed": seed,
            "amp": amp,
            "channels_last": channels_last,
        }
        self.step = 0
        self.last_checkpoint: Path | None = None
        self._saved_step: int | None = None
        self._metrics: MetricsLog | None = None  # open during fit, on rank 0
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        if resume:
            self._resume(fallback)
        elif self.run_dir is not None and checkpoint_dirs(self.run_dir):
            raise ConfigError(
                f"{self.run_dir} already holds checkpoints; pass resume=True to continue that "
                "run, or choose another run_dir"
            )
        if distributed.is_distributed():
            self._start_ranks_alike()

    def _mixed_precision(self, amp: bool) -> tuple[torch.dtype | None, Any]:
        if not amp:
            return None, None
        first = next(self.model.parameters(), None)
        if first is None or not first.is_cuda:
            raise ConfigError("amp (mixed precision) needs the model on a CUDA device")
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, None  # bfloat16 has float32's range: no loss scaling
        return torch.float16, torch.amp.GradScaler("cuda")

    def _autocast(self, enabled: bool) -> contextlib.AbstractContextManager:
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self._amp_dtype, enabled=enabled)

    # ------------------------------------------------------------------------------ the loop
    def fit(self, until_step: int | None = None) -> dict[str, Any]:
        """Train to the end (or until the global step ``until_step``, checkpointing there).

        Returns:
            The metrics row of the last step run (empty when none ran).

        Raises:
            TrainingError: a loss or the gradient norm is not finite; the optimizer step was not
                taken and checkpoints already written are untouched.
        """
        stop = self.total_steps if until_step is None else min(until_step, self.total_steps)
        self.model.train()
        metrics = None
        if self.run_dir is not None and distributed.is_main():
            metrics = MetricsLog(
                self.run_dir / METRICS_FILE,
                resume_step=self.step or None,
                tensorboard=self.tensorboard,
            )
        self._metrics = metrics
        show = self.progress and sys.stderr.isatty() and distributed.is_main()
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", disable=not show)
        row: dict[str, Any] = {}
        try:
            while self.step < stop:
                for batch in self.loader:
                    row = self._train_step(batch)
                    if metrics is not None:
                        metrics.append(row)
                    bar.update(1)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.3g}", refresh=False)
                    if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                        self.checkpoint()
                    if self.step >= stop:
                        break
                if self.loader.position == len(self.loader):  # stopped on an epoch's last batch
                    self.loader.set_epoch(self.loader.epoch + 1)
                if self.loader.position == 0:  # an epoch ended
                    log.info("epoch %d done at step %d", self.step // len(self.loader), self.step)
                    self.checkpoint()
            self.checkpoint()  # a planned stop resumes exactly from here
        finally:
            bar.close()
            if metrics is not None:
                metrics.close()
            self._metrics = None
        return row

    def _train_step(self, batch: Any) -> dict[str, Any]:
        started = time.perf_counter()
        if self.channels_last:
            batch = channels_last_batch(batch)
        self.optimizer.zero_grad(set_to_none=True)
        calls = 0
        # Under DDP a rank that meets a non-finite loss must not stop alone (the others would
        # wait for it forever): it skips the remaining backward passes and the ranks stop
        # together after the step's collective.
        defer = distributed.is_distributed()
        non_finite: list[torch.Tensor] = []

        def check(loss: torch.Tensor) -> bool:
            if non_finite or not bool(torch.isfinite(loss.detach()).all()):
                if not defer:
                    self._check_finite(loss, "loss")
                non_finite.append(loss.detach())
                return False
            return True

        def backward(loss: torch.Tensor) -> None:
            nonlocal calls
            calls += 1
            if check(loss):
                with self._autocast(enabled=False):  # backward outside autocast, as torch advises
                    (self.scaler.scale(loss) if self.scaler else loss).backward()

        with self._autocast(enabled=True):
            loss, step_metrics = self.step_fn(self.model, batch, backward)
        if calls == 0:
            backward(loss)
        else:
            check(loss)
        loss_value = float(loss.detach())
        step_values = {k: _scalar(v) for k, v in step_metrics.items()}
        if defer:
            loss_value, step_values = self._reduce_step(non_finite, loss_value, step_values)
        grad_norm = None
        if self.grad_clip is not None:
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self._parameters, self.grad_clip))
            if not math.isfinite(grad_norm) and not self.scaler:
                self._check_finite(torch.tensor(grad_norm), "gradient norm")
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        lr = self.scheduler.get_last_lr()[0]  # the rate this step used
        self.scheduler.step()
        self.step += 1
        row: dict[str, Any] = {"step": self.step, "epoch": self.loader.epoch, "lr": lr}
        row["loss"] = loss_value
        row.update(step_values)
        if grad_norm is not None:
            row["grad_norm"] = grad_norm
        row["seconds"] = round(time.perf_counter() - started, 6)
        return row

    def _reduce_step(
        self, non_finite: list[torch.Tensor], loss: float, values: dict[str, float]
    ) -> tuple[float, dict[str, float]]:
        """DDP: average the gradients over the ranks and, in the same collective, count the
        ranks whose loss was not finite and sum the loss and metrics (their means are logged);
        then copy rank 0's buffers to every rank. Changes the gradients and buffers."""
        size = distributed.world_size()
        head = [float(bool(non_finite)), loss, *values.values()]
        sums = distributed.average_gradients_(self._parameters, head)
        if sums[0]:
            shown = non_finite[0] if non_finite else torch.tensor(float("nan"))
            self._check_finite(shown, "loss", f"on {int(sums[0])} of {size} ranks")
        distributed.broadcast_(list(self.model.buffers()))
        means = [total / size for total in sums[1:]]
        return means[0], dict(zip(values, means[1:]))

    def _check_finite(self, value: torch.Tensor, what: str, where: str = "") -> None:
        if bool(torch.isfinite(value.detach()).all()):
            return
        if self.last_checkpoint is not None:
            kept = f"; the last checkpoint, {self.last_checkpoint}, is intact"
        else:
            kept = "; no checkpoint was written yet"
        raise TrainingError(
            f"the {what} is {float(value.detach().float().reshape(-1)[0])} at step "
            f"{self.step + 1} (epoch {self.loader.epoch}{', ' + where if where else ''}): "
            f"training stopped before the optimizer step{kept}. Lower the learning rate, set "
            "grad_clip, or check the data and the step function"
        )

    # ------------------------------------------------------------------------------- ranks
    @property
    def _parameters(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _start_ranks_alike(self) -> None:
        """DDP: every rank starts from rank 0's weights and buffers (as `DistributedDataParallel`
        does), and the ranks' random states must agree. Changes the model."""
        distributed.broadcast_([*self.model.parameters(), *self.model.buffers()])
        self._check_ranks_agree(starting=True)

    def _check_ranks_agree(self, starting: bool = False) -> None:
        own = getattr(self.step_fn, "state_dict", None)
        distributed.check_random_states(own() if callable(own) else None, self.step, starting)

    # --------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as a nested state (`save_checkpoint` stores it)."""
        state: dict[str, Any] = {
            "step": self.step,
            "epoch": self.loader.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "loader": self.loader.state_dict(),
            "world_size": distributed.world_size(),
            "settings": self.settings,
            "config": self.config,
        }
        if self.scaler:
            state["scaler"] = self.scaler.state_dict()
        if callable(getattr(self.step_fn, "state_dict", None)):
            state["step_fn"] = self.step_fn.state_dict()
        return state

    def checkpoint(self) -> Path | None:
        """Write a checkpoint of the current step to ``run_dir`` (once per step).

        Under DDP only rank 0 writes, and every rank returns once it is complete (a barrier), so
        that a resume on any rank sees whole checkpoints; call it on every rank.
        """
        if self.run_dir is None or self._saved_step == self.step:
            return self.last_checkpoint
        if distributed.is_distributed():
            self._check_ranks_agree()
        if distributed.is_main():
            path = save_checkpoint(self.run_dir, self.step, self.state_dict(), self.keep_last)
            if self._metrics is not None:
                self._metrics.flush()
        else:
            path = checkpoint_path(self.run_dir, self.step)
        distributed.barrier()
        self.last_checkpoint, self._saved_step = path, self.step
        return self.last_checkpoint

    def _resume(self, fallback: bool) -> None:
        resume_trainer(self, fallback)


def _scalar(value: Any) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
