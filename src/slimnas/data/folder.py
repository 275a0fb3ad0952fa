"""ImageFolder trees decoded once into uint8 tensors, with an optional on-disk decoded cache.

The layout is torchvision's ``ImageFolder``: ``root/<class name>/**/<image>``, classes in sorted
order, label = position of the class name. Each image is decoded with Pillow, converted to RGB,
its shorter side resized to ``resize`` (default ``size``) and centre-cropped to ``size × size``;
with ``channels=1`` (a model whose first conv takes one channel) converted to grayscale ("L")
instead, so that grayscale images stay one channel.
For small-image data sets decoding, not the network, bounds an epoch; decoding once and keeping
the uint8 result in memory (and, with ``cache_dir``, in a ``.npz`` file reused by later runs)
removes that cost. The cache is keyed by a hash of the file list (paths, sizes, modification
times) and the sizes, written atomically and read without pickle.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from slimnas.errors import ConfigError
from slimnas.io import atomic_write_bytes

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
)

_CACHE_VERSION = 1


def find_images(root: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """List an ImageFolder tree: ``(files, labels, classes)``, files sorted within each class.

    Raises:
        ConfigError: ``root`` is missing, has no class folders, or a class folder has no images.
    """
    root = Path(root).expanduser()
    expected = f"expected {root}/<class name>/<image files ({', '.join(IMAGE_EXTENSIONS[:3])} …)>"
    if not root.is_dir():
        raise ConfigError(f"image folder {root} does not exist; {expected}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ConfigError(f"image folder {root} has no class folders; {expected}")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = sorted(
            Path(folder) / f
            for folder, _, names in os.walk(root / name, followlinks=True)
            for f in names
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
        )
        if not found:
            raise ConfigError(f"class folder {root / name} holds no images; {expected}")
        files += found
        labels += [label] * len(found)
    return files, labels, classes


def decode_image(
    path: str | Path, size: int, resize: int | None = None, channels: int = 3
) -> np.ndarray:
    """Decode one image to uint8 ``[channels, size, size]``, RGB (3) or grayscale (1, Pillow's
    "L": colour images by ITU-R 601 luma): shorter side to ``resize``, centre crop.

    Raises:
        ConfigError: Pillow cannot read the file.
    """
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError("reading image folders needs Pillow; pip install pillow") from None

    resize = size if resize is None else resize
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            width, height = image.size
            scale = resize / min(width, height)
            new = (max(size, round(width * scale)), max(size, round(height * scale)))
            if new != image.size:
                image = image.resize(new, Image.Resampling.BILINEAR)
            left, top = (new[0] - size) // 2, (new[1] - size) // 2
            image = image.crop((left, top, left + size, top + size))
            array = np.asarray(image, dtype=np.uint8)
            return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ConfigError(
            f"cannot decode image {path} ({' '.join(str(err).split())}); remove or replace it"
        ) from None


def load_image_folder(
    root: str | Path,
    size: int,
    *,
    resize: int | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    channels: int = 3,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode an ImageFolder tree into memory.

    Args:
        root: ``root/<class name>/**/<image>``.
        size: side of the square centre crop.
        resize: shorter side before cropping (ImageNet style 256 → 224); default ``size``.
        cache_dir: when given, the decoded arrays are saved there once and reused while the file
            list and sizes are unchanged.
        workers: decoding threads; default ``min(8, cpu count)``.
        channels: 3 (RGB) or 1 (grayscale).

    Returns:
        ``(images, labels, classes)``: uint8 ``[N, channels, size, size]``, int64 ``[N]`` and
        the class names in label order.

    Raises:
        ConfigError: the folder is missing or empty, or an image cannot be decoded.
    """
    if size < 1 or (resize is not None and resize < size):
        raise ConfigError(f"need 1 <= size <= resize, got size {size}, resize {resize}")
    files, labels, classes = find_images(root)
    cache = None
    if cache_dir is not None:
        cache = (
            Path(cache_dir).expanduser()
            / f"imagefolder-{_cache_key(root, files, size, resize, channels)}.npz"
        )
        cached = _read_cache(cache, len(files), size, channels)
        if cached is not None:
            logger.info("decoded images from cache %s", cache)
            return cached[0], cached[1], classes
    images = np.empty((len(files), channels, size, size), dtype=np.uint8)
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes without the GIL
        decoded = pool.map(lambda path: decode_image(path, size, resize, channels), files)
        try:
            for i, array in enumerate(tqdm(decoded, total=len(files), desc="decode", disable=None)):
                images[i] = array
        except BaseException:
            pool.shutdown(cancel_futures=True)  # one bad image: do not decode the rest first
            raise
    label_array = np.asarray(labels, dtype=np.int64)
    if cache is not None:
        buffer = io.BytesIO()
        np.savez(buffer, images=images, labels=label_array, classes=np.asarray(classes, dtype=str))
        atomic_write_bytes(cache, buffer.getvalue())
        logger.info("wrote decoded-image cache %s", cache)
    return torch.from_numpy(images), torch.from_numpy(label_array), classes


def _cache_key(
    root: str | Path, files: list[Path], size: int, resize: int | None, channels: int = 3
) -> str:
    mode = "" if channels == 3 else f" channels={channels}"  # RGB caches keep their names
    digest = hashlib.sha256(f"v{_CACHE_VERSION} size={size} resize={resize}{mode}\n".encode())
    root = Path(root).expanduser()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _read_cache(
    path: Path, count: int, size: int, channels: int = 3
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached arrays, or None (and a warning) when the file is absent or does not fit."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels = data["images"], data["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        logger.warning("ignoring unreadable image cache %s (%s); decoding again", path, err)
        return None
    if (
        images.shape != (count, channels, size, size)
        or images.dtype != np.uint8
        or labels.shape != (count,)
    ):
        logger.warning("ignoring image cache %s: its arrays do not match the folder", path)
        return None
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
