"""A configured data set in memory: train, held-out and test splits of uint8 images, the
normalisation, and the batch loaders the commands train and evaluate with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from slimnas.data.augment import CIFAR10_MEAN, CIFAR10_STD
from slimnas.data.builtin import load_builtin
from slimnas.data.cifar import load_cifar
from slimnas.data.folder import load_image_folder
from slimnas.data.image_files import ImageFiles, stream_folder_splits
from slimnas.data.loader import BatchLoader
from slimnas.data.split import class_balanced_split
from slimnas.data.stream import StreamingLoader
from slimnas.errors import ConfigError


@dataclass
class TrainingData:
    """The splits of one data set and how to normalise them.

    A split is ``(images, labels)``: uint8 images in memory, or (``data.stream``) image files
    decoded per batch; or, from the Python API (`from_loaders`), the user's own re-iterable of
    normalised ``(images, labels)`` batches, such as a ``torch.utils.data.DataLoader``, used
    as it is (its batch size, order, augmentation and sharding).
    """

    train: Any
    heldout: Any | None
    test: Any | None
    num_classes: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @classmethod
    def from_loaders(
        cls, train: Any, heldout: Any = None, test: Any = None, num_classes: int = 0
    ) -> TrainingData:
        """Splits that are the user's data loaders (re-iterables of ``(images, labels)``
        batches, normalised already): `Setup` trains on ``train`` and scores archs on the
        first images of ``heldout``."""
        return cls(train, heldout, test, num_classes, None, None)


def is_split(split: Any) -> bool:
    """True for an ``(images, labels)`` split slimnas batches itself; False for a user's loader."""
    return isinstance(split, tuple) and len(split) == 2 and isinstance(split[1], torch.Tensor)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, pixels scaled to [0, 1]."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in images.split(1024):
        x = chunk.double().div_(255).transpose(0, 1).reshape(images.shape[1], -1)
        total += x.sum(dim=1)
        squares += x.square().sum(dim=1)
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def load_folder_splits(root: Path, size: int, channels: int = 3) -> tuple[tuple, tuple | None, int]:
    """``root/train/<class>/…`` and, when present, ``root/val/<class>/…`` as the test split,
    decoded as RGB (``channels`` 3) or grayscale (1)."""
    if not (root / "train").is_dir():
        raise ConfigError(
            f"data.root {root} has no train/ folder; expected {root}/train/<class>/<images> "
            f"(and optionally {root}/val/<class>/<images> as the test split)"
        )
    *train, classes = load_image_folder(root / "train", size, channels=channels)
    test = None
    if (root / "val").is_dir():
        *test, test_classes = load_image_folder(root / "val", size, channels=channels)
        if test_classes != classes:
            raise ConfigError(
                f"{root}/val and {root}/train hold different class folders; give both the same"
            )
    return tuple(train), tuple(test) if test else None, len(classes)


def load_training_data(data, channels: int = 3) -> TrainingData:
    """Load ``data`` (a `DataConfig`) and carve the held-out split out of its training images;
    image folders decoded with ``channels`` (`slimnas.configured_model.image_channels`)."""
    if data.source == "builtin":
        train, test, num_classes = load_builtin(train=True), load_builtin(train=False), 10
    elif data.source in ("cifar10", "cifar100"):
        train = load_cifar(data.root, data.source, train=True)
        test = load_cifar(data.root, data.source, train=False)
        num_classes = 10 if data.source == "cifar10" else 100
    else:
        root = Path(data.root).expanduser()
        if data.stream:  # left on disk, decoded per batch
            train, test, num_classes = stream_folder_splits(root, data, channels)
        else:
            train, test, num_classes = load_folder_splits(root, data.image_size, channels)
    train = _subset(train, data.max_train_images, data.seed, "max_train_images")
    test = _subset(test, data.max_test_images, data.seed, "max_test_images")
    if data.source in ("builtin", "cifar10"):
        mean, std = CIFAR10_MEAN, CIFAR10_STD  # measured on the CIFAR-10 training set
    elif isinstance(train[0], ImageFiles):
        mean, std = train[0].channel_stats()  # of a sample of a streamed set
    else:
        mean, std = channel_stats(train[0])
    heldout = None
    if data.heldout > 0:
        keep, held = class_balanced_split(train[1], data.heldout, seed=data.seed)
        if len(held) == 0:
            raise ConfigError(f"data.heldout = {data.heldout} holds out no image; raise it")
        heldout = (train[0][held], train[1][held])
        train = (train[0][keep], train[1][keep])
    return TrainingData(train, heldout, test, num_classes, mean, std)


def _subset(split, count: int | None, seed: int, setting: str):
    """A seeded class-balanced subset of about ``count`` images of ``split`` (all when None)."""
    if split is None or count is None or count >= len(split[1]):
        return split
    share = count / len(split[1])
    _, keep = class_balanced_split(split[1], share, seed=seed)
    if len(keep) == 0:
        raise ConfigError(f"data.{setting} = {count} keeps no image of some class; raise it")
    return split[0][keep], split[1][keep]


def make_loader(
    data: TrainingData,
    split: tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
    *,
    train: bool,
    seed: int = 0,
    augment: bool = True,
    device: torch.device | str = "cpu",
    rank: int = 0,
    world_size: int = 1,
) -> BatchLoader:
    """Batches of ``split``: shuffled, augmented and full batches only when ``train``; in order
    and complete otherwise. Under DDP, ``rank`` of ``world_size`` gets its shard of each batch.
    Image files (``data.stream``) are decoded per batch by a `StreamingLoader`."""
    kind = StreamingLoader if isinstance(split[0], ImageFiles) else BatchLoader
    return kind(
        *split,
        batch_size,
        shuffle=train,
        seed=seed,
        drop_last=train,
        augment=train and augment,
        mean=data.mean,
        std=data.std,
        device=device,
        rank=rank,
        world_size=world_size,
    )


def resolve_device(recipe) -> torch.device:
    if recipe.device == "cuda" or (recipe.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("recipe.device is 'cuda' but no CUDA device is available; use auto")
        return torch.device("cuda")
    if recipe.amp:
        raise ConfigError("recipe.amp needs a CUDA device and none is available; set it false")
    return torch.device("cpu")
