"""The ``[data]`` section: where the images come from, how they are split, subset, augmented and
(for image folders too large for memory) streamed. The checks that need the model or another
section (a folder's root and image size, streaming only folders) stay in `slimnas.config`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from slimnas.settings import Section
from slimnas.settings import choice as _choice
from slimnas.settings import flag as _flag
from slimnas.settings import integer as _integer
from slimnas.settings import number as _number
from slimnas.settings import share as _share
from slimnas.settings import text as _text

DATA_SOURCES = ("builtin", "cifar10", "cifar100", "folder")
CIFAR_SIZE = 32  # the side of every image of the built-in set and of CIFAR-10/100


@dataclass(frozen=True)
class DataConfig(Section):
    section: ClassVar[str] = "data"

    source: str = _choice("builtin", DATA_SOURCES, "where the images come from")
    root: str | None = _text(
        None,
        "cifar10/cifar100: the folder holding the binary version; folder: the folder holding "
        "train/<class>/ (and optionally val/<class>/ as test split); unused by builtin",
        optional=True,
    )
    image_size: int | None = _integer(
        None, 1, "side of the square images; 32 for builtin and CIFAR, required for folder", True
    )
    heldout: float = _number(
        0.0,
        "a number in [0, 1)",
        _share,
        "share of each class of the training data held out for validation (and search)",
    )
    seed: int = _integer(0, 0, "seed of the held-out split and of the subsets below")
    max_train_images: int | None = _integer(
        None, 1, "use a class-balanced subset of this many training images (quick runs)", True
    )
    max_test_images: int | None = _integer(
        None, 1, "use a class-balanced subset of this many test images (quick runs)", True
    )
    augment: bool = _flag(
        True,
        "training crops and flips: at a random offset (zero padding 4) in memory; random-resized "
        "crops (stream)",
    )
    stream: bool = _flag(
        False,
        "folder only: leave the images on disk and decode each batch in data.workers processes "
        "(ImageNet-sized sets), with ImageNet's training and evaluation transforms",
    )
    workers: int = _integer(2, 0, "stream only: decoding processes (0: in the main process)")
    resize: int | None = _integer(
        None,
        1,
        "stream only: shorter side before the centre crop of evaluation images; none: "
        "8/7 x image_size (256 for 224)",
        True,
    )


@dataclass(frozen=True)
class PipelineDataConfig(DataConfig):
    heldout: float = _number(
        0.1,
        "a number in (0, 1)",
        lambda v: 0 < v < 1,
        "share of each class of the training data held out to score archs in the search",
    )
