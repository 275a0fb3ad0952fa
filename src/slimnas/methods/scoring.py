"""Scoring archs of a trained supernet on held-out training data (AutoSlim §3.2).

A subnet's shared BatchNorm statistics belong to no single width, so before it is scored they
are either *recalibrated* (US-Nets §3.3: reset, then a cumulative average over a few training
batches) or the scoring batches normalise themselves with their own *batch* statistics (BatchNorm
in train mode, as MMRazor's search does). ``"batch"`` is the default of the search: it costs one
forward pass per arch instead of two, and with scoring batches of several hundred images the
statistics are close to recalibrated ones (tests/methods/test_scoring.py measures the rank
agreement). Recalibration remains the rule for final evaluations.

Under ``torchrun`` the archs of `ArchScorer.score_many` are dealt round-robin over the ranks and
the scores gathered back, so every rank returns the same list as a single process would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slimnas.data.iterable import model_device, moved
from slimnas.errors import ConfigError
from slimnas.space.units import Arch
from slimnas.train import distributed
from slimnas.train.bn import recalibrate_bn

BN_MODES = ("batch", "recalibrate")


@dataclass(frozen=True)
class Score:
    """Top-1 ``accuracy`` in [0, 1] and mean cross-entropy ``loss`` over ``samples`` images."""

    accuracy: float
    loss: float
    samples: int


class ArchScorer:
    """Scores archs of ``supernet`` on fixed held-out batches.

    Args:
        supernet: a trained `Supernet` (on the batches' device).
        batches: ``(images, labels)`` batches that every arch is scored on (held-out training
            data, never the test set): any iterable (a list, a `BatchLoader`, a
            ``torch.utils.data.DataLoader``), read once here into a list reused for every arch,
            on the supernet's device.
        bn: ``"batch"`` (statistics of each scoring batch) or ``"recalibrate"``.
        calibration: ``"recalibrate"`` only: the training batches to re-estimate statistics on
            (any iterable, read once as ``batches``).

    Changes the supernet's active arch and (``"recalibrate"``) its BatchNorm buffers; the
    supernet is left at its max arch afterwards.
    """

    def __init__(
        self,
        supernet: nn.Module,
        batches: Iterable,
        bn: str = "batch",
        calibration: Iterable | None = None,
    ):
        if bn not in BN_MODES:
            raise ConfigError(f"bn must be one of {', '.join(BN_MODES)}, got {bn!r}")
        device = model_device(supernet)
        batches = list(moved(batches, device))
        calibration = list(moved(calibration, device)) if calibration is not None else []
        if not batches:
            raise ConfigError("no scoring batches: hold out some training data (data.heldout)")
        if bn == "recalibrate" and not calibration:
            raise ConfigError("bn='recalibrate' needs calibration batches of training data")
        self.supernet = supernet
        self.batches = batches
        self.bn = bn
        self.calibration = calibration
        self.evaluations = 0  # archs scored by this process

    @torch.no_grad()
    def score(self, arch: Arch) -> Score:
        """The held-out accuracy and loss of ``arch`` (computed in this process only)."""
        supernet = self.supernet
        modes = {m: m.training for m in supernet.modules()}
        try:
            if self.bn == "recalibrate":
                recalibrate_bn(supernet, arch, self.calibration)
                supernet.eval()
            else:
                supernet.activate(arch)
                supernet.eval()
                for m in supernet.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.train()
            correct, total, count = 0, 0.0, 0
            for images, labels in self.batches:
                if self.bn == "batch":
                    logits = _forward_without_stat_update(supernet, images)
                else:
                    logits = supernet(images)
                logits = logits.float()
                total += F.cross_entropy(logits, labels, reduction="sum").item()
                correct += int((logits.argmax(dim=1) == labels).sum())
                count += len(labels)
        finally:
            for module, mode in modes.items():
                module.train(mode)
            supernet.activate(supernet.max_arch())
        self.evaluations += 1
        return Score(correct / count, total / count, count)

    def score_many(self, archs: Sequence[Arch]) -> list[Score]:
        """Scores of ``archs`` in order; the archs are shared out over the ranks under torchrun."""
        rank, world = distributed.rank(), distributed.world_size()
        if world == 1:
            return [self.score(arch) for arch in archs]
        table = torch.zeros(len(archs), 3, dtype=torch.float64)
        for i in range(rank, len(archs), world):
            s = self.score(archs[i])
            table[i] = torch.tensor([s.accuracy, s.loss, s.samples], dtype=torch.float64)
        distributed.all_reduce_sum_([table])
        return [Score(float(a), float(b), int(c)) for a, b, c in table.tolist()]


def _forward_without_stat_update(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Forward with BatchNorm normalising by batch statistics, running buffers untouched."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.track_running_stats, m.running_mean, m.running_var) for m in norms]
    try:
        for m in norms:
            # F.batch_norm with running stats None and training=True uses batch statistics.
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
        return model(images)
    finally:
        for m, (track, mean, var) in zip(norms, saved):
            m.track_running_stats, m.running_mean, m.running_var = track, mean, var


__all__ = ["BN_MODES", "ArchScorer", "Score"]
