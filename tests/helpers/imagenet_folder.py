"""A tiny ImageNet in the standard layout, written to disk for the recipe tests:
``train/<wnid>/<wnid>_<i>.JPEG`` and ``val/<wnid>/ILSVRC2012_val_<k>.JPEG``, RGB JPEGs of several
sizes and aspect ratios (larger and smaller than the crops), tinted by class so that a net can
tell the classes apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331")
# (width, height): landscape, portrait, square; above and below the 32-64 px the tests crop to.
SIZES = ((96, 72), (50, 80), (64, 64), (120, 90), (40, 40), (75, 100))


def make_imagenet_folder(
    root: Path, classes: int = 4, per_class: int = 12, val: int = 3, seed: int = 0
) -> Path:
    """Write ``classes`` synsets of ``per_class`` training and ``val`` validation JPEGs under
    ``root`` (``root/train``, ``root/val``); returns ``root``."""
    rng = np.random.default_rng(seed)
    index = 0
    for split, count in (("train", per_class), ("val", val)):
        for label, wnid in enumerate(WNIDS[:classes]):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            tint = np.array([(label * 90) % 256, (label * 160) % 256, (label * 50) % 256])
            for i in range(count):
                width, height = SIZES[(i + label) % len(SIZES)]
                noise = rng.integers(0, 100, (height, width, 3))
                pixels = np.clip(tint * 0.6 + noise + np.arange(height)[:, None, None], 0, 255)
                index += 1
                name = (
                    f"{wnid}_{i}.JPEG" if split == "train" else f"ILSVRC2012_val_{index:08d}.JPEG"
                )
                Image.fromarray(pixels.astype(np.uint8)).save(folder / name, quality=90)
    return root
