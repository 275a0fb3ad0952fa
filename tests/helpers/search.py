"""A tiny `Setup` and a traced model for the method tests: the built-in CIFAR-10 slice, one
short epoch, a few scoring images."""

from __future__ import annotations

from pathlib import Path

import torch

from slimnas.config import SupernetConfig
from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, load_builtin, normalize
from slimnas.data.prepare import TrainingData
from slimnas.methods.setup import Setup
from slimnas.models.build import build_model
from slimnas.space.trace import trace
from slimnas.supernet import Supernet


def tiny_data(train: int = 128, heldout: int = 64, test: int = 0) -> TrainingData:
    images, labels = load_builtin(train=True)
    held = slice(4000, 4000 + heldout)
    tested = slice(4500, 4500 + test)
    return TrainingData(
        train=(images[:train], labels[:train]),
        heldout=(images[held], labels[held]),
        test=(images[tested], labels[tested]) if test else None,
        num_classes=10,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )


def tiny_setup(folder: Path | None = None, data: TrainingData | None = None, **recipe) -> Setup:
    """A `Setup` of one epoch of batches of 32 on `tiny_data`, scoring on its held-out images."""
    recipe = {"epochs": 1, "batch_size": 32, "warmup_epochs": 0.0, **recipe}
    data = data or tiny_data()
    return Setup(
        data,
        SupernetConfig(**recipe),
        folder,
        score_images=len(data.heldout[1]),
        score_batch=32,
        calibration_batches=2,
        progress=False,
    )


def tiny_example() -> torch.Tensor:
    """One normalised built-in image."""
    return normalize(load_builtin(train=True)[0][:1], CIFAR10_MEAN, CIFAR10_STD)


def tiny_supernet(name: str = "resnet20", ops: bool = False, width: float = 0.5) -> Supernet:
    """A fresh supernet of model ``name`` (seed 0): channel units on a grid of quarters, depth
    fixed; with ``ops``, only its op units searched."""
    torch.manual_seed(0)
    model, _ = build_model(name, num_classes=10, width_mult=width)
    space = trace(model, tiny_example(), divisor=4, steps=4)
    for unit in space.depth_units():
        space = space.fix(unit.name)
    if ops:
        for unit in space.channel_units():
            space = space.fix(unit.name)
    return Supernet(model, space)
