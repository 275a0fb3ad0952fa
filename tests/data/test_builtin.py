"""Tests for the built-in CIFAR-10 subset (data/builtin.py, data/make_builtin.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from slimnas.data import BUILTIN_CLASSES, builtin_source_index, load_builtin
from slimnas.data.builtin import builtin_file, decode_residuals, encode_residuals
from slimnas.data.make_builtin import builtin_arrays

MAX_BYTES = 15_000_000


def test_packaged_file_is_small_and_pickle_free() -> None:
    path = Path(str(builtin_file()))
    assert path.is_file() and path.stat().st_size <= MAX_BYTES
    with np.load(path, allow_pickle=False) as data:  # raises if any member needed pickle
        assert all(data[name].dtype != object for name in data.files)
        assert data["classes"].tolist() == list(BUILTIN_CLASSES)


@pytest.mark.parametrize(("train", "count"), [(True, 5_000), (False, 1_000)])
def test_shapes_and_balanced_classes(train: bool, count: int) -> None:
    images, labels = load_builtin(train=train)
    assert images.shape == (count, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    assert labels.bincount().tolist() == [count // 10] * 10
    assert images.float().std() > 40  # real photographs, not a constant or a decoding slip


def test_residual_coding_is_exact() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 3, 7, 9), dtype=np.uint8)
    assert np.array_equal(decode_residuals(encode_residuals(images)), images)


@pytest.mark.parametrize("train", [True, False])
def test_images_are_records_of_the_shared_copy(cifar10_root: Path, train: bool) -> None:
    folder = cifar10_root / "cifar-10-batches-bin"
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
    images, labels = load_builtin(train=train)
    source = builtin_source_index(train=train)
    assert len(torch.unique(source)) == len(source)
    for k in [0, 1, 2, len(source) // 2, len(source) - 1]:
        # Read the record straight from the binary file, without the reader under test.
        index = int(source[k])
        path = folder / names[index // 10_000]
        record = np.fromfile(path, np.uint8, 3073, offset=(index % 10_000) * 3073)
        assert labels[k] == record[0]
        assert images[k].flatten().tolist() == record[1:].tolist()


def test_regeneration_reproduces_the_packaged_arrays(cifar10_root: Path) -> None:
    new = builtin_arrays(cifar10_root)
    with np.load(Path(str(builtin_file())), allow_pickle=False) as old:
        assert list(new) == [name.removesuffix(".npy") for name in old.zip.namelist()]
        for name, array in new.items():
            assert array.dtype == old[name].dtype and np.array_equal(array, old[name]), name
