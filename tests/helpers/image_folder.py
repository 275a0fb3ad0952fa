"""A small ImageFolder tree written to disk for the folder and streaming tests: PNGs of several
sizes whose colour depends on the class (so a net can learn them), one class of grayscale
images, and on request one file that is not an image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# (width, height) of the images, in turn: wider, taller and square, smaller and larger than
# the sizes the tests crop to.
SIZES = ((40, 30), (24, 36), (32, 32), (50, 44), (20, 20))
GRAY_CLASS = "c_gray"


def make_image_folder(
    root: Path, classes: int = 4, per_class: int = 12, val: int = 0, seed: int = 0
) -> Path:
    """Write ``root/train/<class>/…`` (and ``root/val/<class>/…`` with ``val`` per class);
    the last class holds grayscale ("L") images. Returns ``root``."""
    rng = np.random.default_rng(seed)
    names = [f"c{k}" for k in range(classes - 1)] + [GRAY_CLASS]
    for split, count in (("train", per_class), ("val", val)):
        for label, name in enumerate(names):
            if count == 0:
                continue
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            tint = np.array([(label * 80) % 256, (label * 150) % 256, (label * 40) % 256])
            for i in range(count):
                width, height = SIZES[(i + label) % len(SIZES)]
                noise = rng.integers(0, 120, (height, width, 3))
                pixels = np.clip(tint * 0.5 + noise + np.arange(width)[None, :, None], 0, 255)
                image = Image.fromarray(pixels.astype(np.uint8))
                if name == GRAY_CLASS:
                    image = image.convert("L")
                image.save(folder / f"{i:04d}.png")
    return root


def add_corrupt_file(root: Path) -> Path:
    """A ``.png`` in the first training class that is not an image; returns its path."""
    first = sorted((root / "train").iterdir())[0]
    path = first / "zz_corrupt.png"
    path.write_bytes(b"\x89PNG this is not an image")
    return path
