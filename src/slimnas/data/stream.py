"""`StreamingLoader`: batches of image files decoded per batch by worker processes.

The loader of ``data.stream = true``: for sets too large for memory (ImageNet), each batch is
read and decoded from disk by ``workers`` processes of a ``torch.utils.data.DataLoader``, with
the standard ImageNet transforms of torchvision's reference recipe (Szegedy et al., "Going
Deeper with Convolutions", arXiv 1409.4842, §6, as torchvision implements it):

- training (``augment``): a random-resized crop — area 8 %–100 % of the image, aspect ratio
  3/4–4/3 (log-uniform), ten tries, else the largest centre crop of an allowed ratio — resized
  to ``size × size`` (bilinear, antialiased), and a horizontal flip with probability 0.5;
- evaluation (and training without ``augment``): shorter side to ``resize``, centre crop
  (`decode_image`, the in-memory path's decoder).

It is a `BatchLoader` in every other respect, and shares its order, sharding and state: the
order of epoch ``e`` comes from ``(seed, e)``, each rank decodes its contiguous slice of every
global batch, and the crop and flip of image ``i`` in epoch ``e`` come from a generator seeded by
``(seed, e, i)`` alone. So the batches depend neither on the number of workers nor on which
worker decodes what, and a resumed loader starts at its batch without reading the ones before.
Images cross from the workers as uint8 and are normalised in the main process, on ``device``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from slimnas.data.augment import normalize
from slimnas.data.image_files import ImageFiles, decode_evaluation
from slimnas.data.loader import BatchLoader, derive_seed
from slimnas.errors import CheckpointError, ConfigError

# A stream of derived seeds of its own, apart from BatchLoader's order (0) and augmentation (1).
_CROP_STREAM = 2
_SCALE = (0.08, 1.0)
_RATIO = (3 / 4, 4 / 3)


def random_resized_box(
    width: int, height: int, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """The ``(left, top, right, bottom)`` box of a random-resized crop of a ``width × height``
    image (torchvision's ``RandomResizedCrop.get_params``, drawn from ``rng``)."""
    area = width * height
    log_ratio = (math.log(_RATIO[0]), math.log(_RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*_SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    ratio = width / height  # fall back to a centre crop of the nearest allowed ratio
    if ratio < _RATIO[0]:
        w, h = width, round(width / _RATIO[0])
    elif ratio > _RATIO[1]:
        w, h = round(height * _RATIO[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def decode_augmented(path: str, size: int, channels: int, seed: int) -> np.ndarray:
    """One training image, uint8 ``[channels, size, size]``: a random-resized crop and a flip
    with probability 0.5, drawn from a generator seeded by ``seed``.

    Raises:
        ConfigError: Pillow cannot decode the file.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            box = random_resized_box(*image.size, rng)
            image = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
            if rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ConfigError(
            f"cannot decode image {path} ({' '.join(str(err).split())}); remove or replace it"
        ) from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


class _Decoded(Dataset):
    """Image ``i`` of epoch ``e`` for the key ``(i, e)``, with its label and, instead of the
    pixels, the one-line error when it cannot be decoded (raised in the main process)."""

    def __init__(self, files: ImageFiles, labels: torch.Tensor, seed: int, augment: bool):
        self.files, self.labels, self.seed, self.augment = files, labels, seed, augment

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray | None, int, str | None]:
        index, epoch = key
        files = self.files
        try:
            if self.augment:
                seed = derive_seed(self.seed, _CROP_STREAM, epoch, index)
                image = decode_augmented(files.paths[index], files.size, files.channels, seed)
            else:
                path = files.paths[index]
                image = decode_evaluation(path, files.size, files.resize, files.channels)
        except ConfigError as err:
            return None, int(self.labels[index]), str(err)
        return image, int(self.labels[index]), None


def _collate(items: list) -> tuple[torch.Tensor | None, torch.Tensor, list[str]]:
    errors = [error for _, _, error in items if error]
    labels = torch.tensor([label for _, label, _ in items], dtype=torch.long)
    if errors:
        return None, labels, errors
    return torch.from_numpy(np.stack([image for image, _, _ in items])), labels, []


class _EpochBatches:
    """This rank's share of each global batch of one epoch from ``start`` on, as keys."""

    def __init__(self, loader: StreamingLoader, epoch: int, start: int):
        self.loader, self.epoch, self.start = loader, epoch, start

    def __len__(self) -> int:
        return len(self.loader) - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        loader, epoch = self.loader, self.epoch
        order = loader.epoch_order(epoch)
        size, rank, world = loader.global_batch_size, loader.rank, loader.world_size
        for index in range(self.start, len(loader)):
            members = order[index * size : (index + 1) * size]
            first = rank * len(members) // world
            last = (rank + 1) * len(members) // world
            yield [(int(i), epoch) for i in members[first:last]]


class StreamingLoader(BatchLoader):
    """`BatchLoader` over `ImageFiles`: the same order, sharding, ``len`` and state, batches
    decoded from disk by ``files.workers`` processes (module doc).

    Args:
        files: the images, on disk.
        labels: integer ``[N]``.
        batch_size: images per batch on this rank.
        shuffle, seed, drop_last, mean, std, rank, world_size, device: as `BatchLoader`'s.
        augment: random-resized crops and flips (else evaluation crops).
    """

    def __init__(
        self,
        files: ImageFiles,
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
        device: torch.device | str | None = None,
    ) -> None:
        if len(labels) != len(files) or labels.dim() != 1 or labels.is_floating_point():
            raise ConfigError(
                f"labels must be an integer [N] tensor with N = {len(files)} (one per file)"
            )
        # BatchLoader's checks and settings, on a stand-in of the right length (no pixels).
        super().__init__(
            torch.empty(len(files), 0, 0, 0, dtype=torch.uint8),
            labels,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            mean=mean,
            std=std,
            rank=rank,
            world_size=world_size,
            device=device,
        )
        self.images = files
        self.augment = augment
        self._dataset = _Decoded(files, self.labels, seed, augment)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, start = self.epoch, self.position
        device = self.device or torch.device("cpu")
        workers = self.images.workers
        batches = DataLoader(
            self._dataset,
            batch_sampler=_EpochBatches(self, epoch, start),
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=device.type == "cuda",
            prefetch_factor=2 if workers else None,
        )
        for index, (images, labels, errors) in enumerate(batches, start):
            if errors:
                raise ConfigError(errors[0])
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if self.mean is not None:
                images = normalize(images, self.mean, self.std)
            self.position = index + 1  # before yielding: a state saved now names the next batch
            yield images, labels
        self.epoch = epoch + 1
        self.position = 0

    def state_dict(self) -> dict[str, Any]:
        """`BatchLoader`'s state, marked as a stream's (whose batches are other images)."""
        return {**super().state_dict(), "stream": True, "augment": self.augment}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at the batch ``state`` names (`BatchLoader.load_state_dict`).

        Raises:
            CheckpointError: ``state`` is an in-memory loader's, or as `BatchLoader`'s.
        """
        if not state.get("stream"):
            raise CheckpointError(
                "loader state was saved by an in-memory loader, this one streams from disk "
                "(data.stream); resume with the data settings of the run"
            )
        super().load_state_dict(state)


__all__ = ["StreamingLoader", "decode_augmented", "random_resized_box"]
