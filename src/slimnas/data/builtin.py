"""A real subset of CIFAR-10 shipped inside the package, so that examples and tests run offline.

``builtin/cifar10_subset.npz`` holds 5,000 training images (500 per class) and 1,000 test images
(100 per class) drawn by a seeded class-balanced draw from the project's shared CIFAR-10 copy
(Krizhevsky, Nair, Hinton 2009; decoded from JPEGs saved at quality 75, so pixels differ slightly
from the original release). `make_builtin.py` regenerates it byte for byte; docs/data.md gives
provenance and citation.

Storage follows PNG's idea, exactly invertible: each byte is stored as its difference (mod 256)
from a linear prediction by its neighbours, which deflate compresses far better than raw pixels
(about 10 MB instead of 17 MB). The prediction is the 3-D difference along channels, rows and
columns, so decoding is three cumulative sums in uint8 arithmetic, a fraction of a second.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
import torch

from slimnas.data.cifar import CIFAR10_CLASSES

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

BUILTIN_CLASSES = CIFAR10_CLASSES
BUILTIN_FORMAT = 1
_FILE = "cifar10_subset.npz"

# Axes of an NCHW array along which bytes are differenced: channels, rows, columns.
_AXES = (1, 2, 3)


def encode_residuals(images: np.ndarray) -> np.ndarray:
    """Differences (mod 256) of uint8 ``[N, C, H, W]`` images along C, H, W; undone by decode."""
    residuals = np.asarray(images, dtype=np.uint8)
    for axis in _AXES:
        residuals = np.diff(residuals, axis=axis, prepend=np.uint8(0))
    return residuals


def decode_residuals(residuals: np.ndarray) -> np.ndarray:
    """Images from `encode_residuals` output: cumulative sums (mod 256) along W, H and C."""
    images = residuals
    for axis in reversed(_AXES):
        images = np.cumsum(images, axis=axis, dtype=np.uint8)
    return images


def builtin_file() -> Traversable:
    """The packaged ``.npz`` file (a plain file in an installed or editable package)."""
    return resources.files("slimnas.data").joinpath("builtin", _FILE)


def load_builtin(train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The built-in CIFAR-10 subset: 5,000 training or 1,000 test images, 10 balanced classes.

    Returns:
        ``(images, labels)``: uint8 ``[N, 3, 32, 32]`` and int64 ``[N]``, class names in
        `BUILTIN_CLASSES`.
    """
    split = "train" if train else "test"
    with builtin_file().open("rb") as handle, np.load(handle, allow_pickle=False) as data:
        images = decode_residuals(data[f"{split}_residuals"])
        labels = data[f"{split}_labels"].astype(np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)


def builtin_source_index(train: bool = True) -> torch.Tensor:
    """Where each built-in image lies in the source split (records of data_batch_1…5 in order,
    or of test_batch), as int64 ``[N]``."""
    split = "train" if train else "test"
    with builtin_file().open("rb") as handle, np.load(handle, allow_pickle=False) as data:
        return torch.from_numpy(data[f"{split}_source_index"].astype(np.int64))
