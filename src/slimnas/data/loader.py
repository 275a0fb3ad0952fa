"""Deterministic, resumable, DDP-sharded batches over images and labels held in memory.

Everything random is a pure function of the seed and the place in the run, never of history:
the order of epoch ``e`` comes from a generator seeded by ``(seed, e)``, and the crops and flips of
global batch ``b`` from one seeded by ``(seed, e, b)``. So a loader restored from
``(epoch, position)`` yields exactly the batches an uninterrupted one would have, augmentation
included, and no RNG state needs saving.

Under DDP every rank walks the same global batches of ``world_size × batch_size`` images and keeps
its own contiguous slice, augmentation drawn for the whole global batch: ``world_size`` ranks see
exactly the images, in the same crops and flips, that one process with the global batch sees.
For CIFAR-sized data a plain iterator over pre-loaded tensors beats worker processes: a batch is
one index, one gather and one normalisation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from slimnas.data.augment import crop_flip, draw_crop_flip, normalize
from slimnas.data.tensor_dataset import check_images_labels
from slimnas.errors import CheckpointError, ConfigError

# Streams of derived seeds, so that the order and the augmentation never share random numbers.
_ORDER_STREAM = 0
_AUGMENT_STREAM = 1

# Settings that must match for a saved position to mean the same batches.
_STATE_KEYS = ("seed", "num_samples", "global_batch_size", "shuffle", "drop_last")


def derive_seed(*words: int) -> int:
    """A 63-bit seed that is a pure, well-mixed function of non-negative integers ``words``."""
    state = np.random.SeedSequence(list(words)).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class BatchLoader:
    """Iterates ``(images, labels)`` batches of one epoch at a time, resumable at any batch.

    Each ``for batch in loader`` runs from the current position to the end of the current epoch,
    then moves the loader to the start of the next epoch. Stopping early (``break``) keeps the
    position, so ``state_dict()`` taken inside the loop names the next batch to come.

    Args:
        images: uint8 ``[N, C, H, W]``, on the CPU or already on ``device``.
        labels: integer ``[N]``.
        batch_size: images per batch on this rank; the global batch is
            ``batch_size × world_size``.
        shuffle: a fresh order each epoch; otherwise ``0 … N−1``.
        seed: non-negative; fixes every order and augmentation.
        drop_last: drop the last global batch when it is not full (advised for training under
            DDP: otherwise a rank may get a short or even empty last batch).
        augment: padded random crop and horizontal flip (`random_crop_flip`).
        mean: per-channel mean; with ``std``, batches are normalised float32, else left uint8.
        std: per-channel standard deviation.
        rank: this process's rank in ``0 … world_size−1``.
        world_size: number of processes sharing each global batch.
        padding: crop padding for ``augment``.
        device: where batches are built (augmentation runs there); None keeps ``images``' device.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        augment: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        rank: int = 0,
        world_size: int = 1,
        padding: int = 4,
        device: torch.device | str | None = None,
    ) -> None:
        check_images_labels(images, labels)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in 0 … world_size-1 (world_size {world_size})")
        if seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed}")
        if (mean is None) != (std is None):
            raise ConfigError("give both mean and std to normalise batches, or neither")
        self.images = images
        self.labels = labels.long()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.augment = augment
        self.mean = mean
        self.std = std
        self.rank = rank
        self.world_size = world_size
        self.padding = padding
        self.device = torch.device(device) if device is not None else None
        self.epoch = 0
        self.position = 0

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        """Batches in a whole epoch (the same on every rank)."""
        full, rest = divmod(len(self.labels), self.global_batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The order of the examples in ``epoch``, a pure function of ``(seed, epoch)``."""
        n = len(self.labels)
        if not self.shuffle:
            return torch.arange(n)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, _ORDER_STREAM, epoch))
        return torch.randperm(n, generator=generator)

    def set_epoch(self, epoch: int) -> None:
        """Move to the start of ``epoch``; no change when already in it (so resume keeps its place).

        The usual ``for epoch in range(start, epochs): loader.set_epoch(epoch); for b in loader``
        therefore works both for a fresh run and for one resumed mid-epoch.
        """
        if epoch != self.epoch:
            self.epoch = epoch
            self.position = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        order = self.epoch_order(epoch)
        global_batch = self.global_batch_size
        while self.position < len(self):
            index = self.position
            members = order[index * global_batch : (index + 1) * global_batch]
            # Each rank's slice of the global batch; equal shares except in a short last batch.
            start = self.rank * len(members) // self.world_size
            stop = (self.rank + 1) * len(members) // self.world_size
            images, labels = self._batch(members[start:stop])
            if self.augment:
                generator = torch.Generator().manual_seed(
                    derive_seed(self.seed, _AUGMENT_STREAM, epoch, index)
                )
                offsets, flips = draw_crop_flip(len(members), self.padding, generator)
                images = crop_flip(images, offsets[start:stop], flips[start:stop], self.padding)
            if self.mean is not None:
                images = normalize(images, self.mean, self.std)
            self.position = index + 1  # before yielding: a state saved now names the next batch
            yield images, labels
        self.epoch = epoch + 1
        self.position = 0

    def _batch(self, members: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.images[members.to(self.images.device)]
        labels = self.labels[members.to(self.labels.device)]
        if self.device is not None:
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
        return images, labels

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state: the next batch ``(epoch, position)`` and the settings it needs."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "num_samples": len(self.labels),
            "global_batch_size": self.global_batch_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at the batch ``state`` names. Changes this loader's epoch and position.

        The world size may differ from the saved run's as long as the global batch is the same.

        Raises:
            CheckpointError: ``state`` is incomplete or was saved with other data or settings.
        """
        missing = [k for k in ("epoch", "position", *_STATE_KEYS) if k not in state]
        if missing:
            raise CheckpointError(
                f"loader state lacks {', '.join(missing)}; it is not a BatchLoader state"
            )
        mine = self.state_dict()
        differ = [f"{k} {state[k]!r} (now {mine[k]!r})" for k in _STATE_KEYS if state[k] != mine[k]]
        if differ:
            raise CheckpointError(
                f"loader state was saved with {', '.join(differ)}; resume with the same data and "
                f"settings"
            )
        if not 0 <= int(state["position"]) <= len(self):
            raise CheckpointError(
                f"loader state position {state['position']} is outside 0 … {len(self)} batches"
            )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
