"""Reader for the CIFAR-10 and CIFAR-100 *binary* versions (plain bytes, never pickle).

CIFAR-10 and CIFAR-100 are by Krizhevsky, Nair and Hinton ("Learning Multiple Layers of Features
from Tiny Images", 2009). The official "binary version" tarballs extract to:

- ``cifar-10-batches-bin/``: ``data_batch_1.bin`` … ``data_batch_5.bin`` (training, 10,000
  records each) and ``test_batch.bin``; a record is 1 label byte then 3,072 pixel bytes.
- ``cifar-100-binary/``: ``train.bin`` and ``test.bin``; a record is 2 label bytes (coarse, fine)
  then 3,072 pixel bytes.

The pixels of a record are the red plane, then green, then blue, each 32×32 row-major, which is
NCHW order already, so reading is one ``np.fromfile`` and a reshape per file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from slimnas.errors import ConfigError

IMAGE_BYTES = 3 * 32 * 32

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant's binary files lie and how its records are laid out."""

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_bytes: int
    num_classes: int

    @property
    def record_bytes(self) -> int:
        return self.label_bytes + IMAGE_BYTES


LAYOUTS = {
    "cifar10": CifarLayout(
        folder="cifar-10-batches-bin",
        train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test_files=("test_batch.bin",),
        label_bytes=1,
        num_classes=10,
    ),
    "cifar100": CifarLayout(
        folder="cifar-100-binary",
        train_files=("train.bin",),
        test_files=("test.bin",),
        label_bytes=2,
        num_classes=100,
    ),
}

_HOW_TO_GET = (
    "extract the official CIFAR binary version tarball there, or for CIFAR-10 run "
    "`python3 ../shared/data/cifar10.py DIR`"
)


def cifar_folder(root: str | Path, name: str = "cifar10") -> Path:
    """Return the folder holding ``name``'s binary files: ``root`` itself or ``root/<folder>``.

    Raises:
        ConfigError: ``name`` is unknown or no such folder exists.
    """
    layout = _layout(name)
    root = Path(root).expanduser()
    for candidate in (root / layout.folder, root):
        if (candidate / layout.test_files[0]).is_file() or (
            candidate / layout.train_files[0]
        ).is_file():
            return candidate
    raise ConfigError(
        f"no {name} binary data in {root}: expected {root / layout.folder}/ holding "
        f"{', '.join(layout.train_files + layout.test_files)}; {_HOW_TO_GET}"
    )


def load_cifar(
    root: str | Path, name: str = "cifar10", train: bool = True, *, coarse: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of CIFAR-10 or CIFAR-100 from its binary files.

    Args:
        root: the folder holding ``cifar-10-batches-bin`` (``cifar-100-binary``) or that folder.
        name: ``"cifar10"`` or ``"cifar100"``.
        train: the training split (50,000 images) or the test split (10,000).
        coarse: CIFAR-100 only: return the 20 coarse labels instead of the 100 fine ones.

    Returns:
        ``(images, labels)``: uint8 ``[N, 3, 32, 32]`` (RGB, NCHW) and int64 ``[N]``, in file order.

    Raises:
        ConfigError: the folder or a file is missing, a file's size is not a whole number of
            records, or a label is out of range.
    """
    layout = _layout(name)
    if coarse and layout.label_bytes == 1:
        raise ConfigError(f"coarse labels exist only for cifar100, not {name}; drop coarse=True")
    folder = cifar_folder(root, name)
    files = [folder / f for f in (layout.train_files if train else layout.test_files)]
    counts = [_record_count(path, layout) for path in files]  # check every file before reading
    images = np.empty((sum(counts), 3, 32, 32), dtype=np.uint8)
    labels = np.empty(sum(counts), dtype=np.int64)
    label_column = 0 if coarse else layout.label_bytes - 1
    num_classes = 20 if coarse else layout.num_classes
    start = 0
    for path, count in zip(files, counts):
        block = np.fromfile(path, dtype=np.uint8, count=count * layout.record_bytes)
        block = block.reshape(count, layout.record_bytes)
        stop = start + count
        labels[start:stop] = block[:, label_column]
        images[start:stop] = block[:, layout.label_bytes :].reshape(count, 3, 32, 32)
        if labels[start:stop].max() >= num_classes:
            raise ConfigError(
                f"{path} holds label {labels[start:stop].max()} but {name} has {num_classes} "
                f"classes; the file is not {name} binary data"
            )
        start = stop
    return torch.from_numpy(images), torch.from_numpy(labels)


def _layout(name: str) -> CifarLayout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown CIFAR variant {name!r}; use one of {', '.join(sorted(LAYOUTS))}"
        ) from None


def _record_count(path: Path, layout: CifarLayout) -> int:
    expected = (
        f"{layout.record_bytes}-byte records ({layout.label_bytes} label byte"
        f"{'s' if layout.label_bytes > 1 else ''} + {IMAGE_BYTES} pixel bytes)"
    )
    if not path.is_file():
        raise ConfigError(f"missing {path}: expected a file of {expected}; {_HOW_TO_GET}")
    size = path.stat().st_size
    if size == 0 or size % layout.record_bytes:
        raise ConfigError(
            f"{path} has {size} bytes, not a whole number of {expected}; "
            f"the file is truncated or not CIFAR binary data; {_HOW_TO_GET}"
        )
    return size // layout.record_bytes
