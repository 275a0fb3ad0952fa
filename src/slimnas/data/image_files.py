"""`ImageFiles`: the images of an ImageFolder split left on disk, decoded when a batch needs them.

``data.stream = true`` serves a folder this way instead of decoding it whole into memory
(`load_image_folder`): a split is ``(ImageFiles, labels)``, and `ImageFiles` stands in for the
uint8 ``[N, C, S, S]`` tensor wherever slimnas holds one: ``len``, ``shape``, subsets by slice or
index tensor (a held-out split, TAS's halves, a class-balanced subset) without reading a pixel,
and `decode` for the few images a caller wants as a tensor (an example input). Batches come from
`slimnas.data.stream.StreamingLoader`, which `make_loader` picks for such a split.

Evaluation images are decoded exactly as `load_image_folder` decodes them (`decode_image`: shorter
side to ``resize``, centre crop), so the two modes see the same pixels when ``resize`` matches.
Every file's header is read once when the folder is opened: a file Pillow cannot identify stops
the run there with one line naming it (as the in-memory path does), not hours later.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from slimnas.data.folder import decode_image, find_images
from slimnas.errors import ConfigError

log = logging.getLogger(__name__)

# Images whose mean and standard deviation normalise a streamed set (all of a smaller one).
STATS_IMAGES = 1000


def eval_resize(size: int) -> int:
    """The shorter side evaluation images are resized to before the centre crop: ``8/7 × size``
    (ImageNet's 256 for 224)."""
    return round(size * 8 / 7)


def decode_evaluation(path: str, size: int, resize: int, channels: int = 3) -> np.ndarray:
    """One evaluation image, uint8 ``[channels, size, size]``, by the in-memory path's decoder
    (`decode_image`: shorter side to ``resize``, centre crop)."""
    if channels == 3:
        return decode_image(path, size, resize)
    return decode_image(path, size, resize, channels)


class ImageFiles:
    """Image files decoded on demand to uint8 ``[channels, size, size]`` (module doc).

    Args:
        paths: one file per image.
        size: side of the square images.
        resize: shorter side before the evaluation centre crop (default `eval_resize`).
        channels: 3 (RGB; grayscale images are converted) or 1 (grayscale).
        workers: decoding processes of the loaders over these files (0: decode in the main
            process).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        size: int,
        *,
        resize: int | None = None,
        channels: int = 3,
        workers: int = 2,
    ) -> None:
        resize = eval_resize(size) if resize is None else resize
        if size < 1 or resize < size:
            raise ConfigError(f"need 1 <= image size <= resize, got size {size}, resize {resize}")
        if channels not in (1, 3):
            raise ConfigError(f"images have 1 or 3 channels, got {channels}")
        if workers < 0:
            raise ConfigError(f"data.workers must be 0 or more, got {workers}")
        self.paths = np.asarray([str(p) for p in paths], dtype=object)
        self.size = size
        self.resize = resize
        self.channels = channels
        self.workers = workers

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The shape of the decoded images, ``(N, channels, size, size)``."""
        return (len(self), self.channels, self.size, self.size)

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    def __getitem__(self, index) -> ImageFiles | torch.Tensor:
        """A subset (slice, index tensor, list or array of indices or a bool mask), still on
        disk; an integer index decodes that one image."""
        if isinstance(index, (int, np.integer)):
            return torch.from_numpy(np.array(self.decode_one(int(index))))
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        other = object.__new__(ImageFiles)
        other.__dict__.update(self.__dict__)
        other.paths = self.paths[index]
        return other

    def decode_one(self, index: int) -> np.ndarray:
        """Image ``index`` as an evaluation image (shorter side to ``resize``, centre crop)."""
        return decode_evaluation(self.paths[index], self.size, self.resize, self.channels)

    def decode(self) -> torch.Tensor:
        """Every image as an evaluation image, uint8 ``[N, channels, size, size]``."""
        images = np.empty(self.shape, dtype=np.uint8)
        threads = max(1, min(8, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=threads) as pool:  # Pillow decodes without the GIL
            for i, array in enumerate(pool.map(self.decode_one, range(len(self)))):
                images[i] = array
        return torch.from_numpy(images)

    def channel_stats(self, images: int = STATS_IMAGES) -> tuple[tuple, tuple]:
        """Per-channel mean and standard deviation (pixels in [0, 1]) of ``images`` of these
        evaluation images drawn with seed 0 (all when there are fewer): the same figures as
        the in-memory path's on a set that small."""
        from slimnas.data.prepare import channel_stats

        sample = self
        if len(self) > images:
            drawn = torch.randperm(len(self), generator=torch.Generator().manual_seed(0))
            sample = self[drawn[:images].sort().values]
        return channel_stats(sample.decode())


def open_image_folder(
    root: str | Path,
    size: int,
    *,
    resize: int | None = None,
    channels: int = 3,
    workers: int = 2,
) -> tuple[ImageFiles, torch.Tensor, list[str]]:
    """List an ImageFolder tree (as `load_image_folder` does) without decoding it, after reading
    every file's header.

    Returns:
        ``(files, labels, classes)``.

    Raises:
        ConfigError: the folder is missing or empty, or Pillow cannot identify a file (the one
            line names it and how many more there are).
    """
    files, labels, classes = find_images(root)
    check_headers(files)
    images = ImageFiles(files, size, resize=resize, channels=channels, workers=workers)
    return images, torch.tensor(labels, dtype=torch.long), classes


def stream_folder_splits(root: Path, data, channels: int = 3) -> tuple[tuple, tuple | None, int]:
    """``root/train/<class>/…`` and, when present, ``root/val/<class>/…`` (the test split) as
    ``(ImageFiles, labels)`` splits with ``data``'s (a `DataConfig`) size, resize and workers."""
    if not (root / "train").is_dir():
        raise ConfigError(
            f"data.root {root} has no train/ folder; expected {root}/train/<class>/<images> "
            f"(and optionally {root}/val/<class>/<images> as the test split)"
        )
    options = dict(resize=data.resize, channels=channels, workers=data.workers)
    *train, classes = open_image_folder(root / "train", data.image_size, **options)
    test = None
    if (root / "val").is_dir():
        *test, test_classes = open_image_folder(root / "val", data.image_size, **options)
        if test_classes != classes:
            raise ConfigError(
                f"{root}/val and {root}/train hold different class folders; give both the same"
            )
    return tuple(train), tuple(test) if test else None, len(classes)


def check_headers(files: Sequence[Path]) -> None:
    """Open each file's header with Pillow (no pixels decoded), on a thread pool.

    Raises:
        ConfigError: some files are not images Pillow can identify; names the first.
    """
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError("reading image folders needs Pillow; pip install pillow") from None

    def problem(path: Path) -> str | None:
        try:
            with Image.open(path):
                return None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            return f"{path} ({' '.join(str(err).split())})"

    threads = max(1, min(16, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        found = pool.map(problem, files, chunksize=256)
        bad = [p for p in tqdm(found, total=len(files), desc="check", disable=None) if p]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise ConfigError(f"cannot read image {bad[0]}{more}; remove or replace it")


__all__ = [
    "STATS_IMAGES",
    "ImageFiles",
    "check_headers",
    "decode_evaluation",
    "eval_resize",
    "open_image_folder",
    "stream_folder_splits",
]
