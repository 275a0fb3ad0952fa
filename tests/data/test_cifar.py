"""Tests for the CIFAR binary reader (data/cifar.py): exact byte layout, real copy, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, load_cifar
from slimnas.errors import ConfigError


def _records(labels: list[list[int]], planes: list[tuple[int, int, int]]) -> bytes:
    """CIFAR records: label bytes, then a constant R, G and B plane of 1,024 bytes each."""
    out = bytearray()
    for label, (r, g, b) in zip(labels, planes):
        out += bytes(label) + bytes([r]) * 1024 + bytes([g]) * 1024 + bytes([b]) * 1024
    return bytes(out)


def _cifar10_folder(root: Path, files: dict[str, bytes] | None = None) -> Path:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for i, name in enumerate(names):
        (folder / name).write_bytes(_records([[i], [9]], [(10, 20, 30), (i, i, i)]))
    for name, data in (files or {}).items():
        (folder / name).write_bytes(data)
    return folder


def test_record_layout_is_label_then_red_green_blue_planes(tmp_path: Path) -> None:
    _cifar10_folder(tmp_path)
    images, labels = load_cifar(tmp_path, "cifar10", train=True)
    assert images.shape == (10, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    assert labels.tolist() == [0, 9, 1, 9, 2, 9, 3, 9, 4, 9]  # batches 1…5 in order
    first = images[0]
    assert (first[0] == 10).all() and (first[1] == 20).all() and (first[2] == 30).all()


def test_pixels_are_row_major(tmp_path: Path) -> None:
    pixels = np.arange(3 * 32 * 32, dtype=np.int64).reshape(3, 32, 32) % 251
    record = bytes([7]) + pixels.astype(np.uint8).tobytes()
    _cifar10_folder(tmp_path, {"test_batch.bin": record})
    images, labels = load_cifar(tmp_path, train=False)
    assert labels.tolist() == [7]
    assert images[0].numpy().tolist() == pixels.tolist()
    assert images[0, 0, 0, 1] == 1 and images[0, 0, 1, 0] == 32  # x then y


def test_root_may_be_the_binary_folder_itself(tmp_path: Path) -> None:
    folder = _cifar10_folder(tmp_path)
    a, la = load_cifar(tmp_path, train=False)
    b, lb = load_cifar(folder, train=False)
    assert torch.equal(a, b) and torch.equal(la, lb)


def test_cifar100_fine_and_coarse_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(_records([[3, 77], [19, 99]], [(1, 2, 3), (4, 5, 6)]))
    (folder / "test.bin").write_bytes(_records([[0, 5]], [(7, 8, 9)]))
    images, fine = load_cifar(tmp_path, "cifar100", train=True)
    _, coarse = load_cifar(tmp_path, "cifar100", train=True, coarse=True)
    assert fine.tolist() == [77, 99] and coarse.tolist() == [3, 19]
    assert images[1, :, 5, 5].tolist() == [4, 5, 6]
    test_images, test_fine = load_cifar(folder, "cifar100", train=False)
    assert test_fine.tolist() == [5] and test_images[0, :, 0, 0].tolist() == [7, 8, 9]


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({"data_batch_3.bin": b"\x01" * 3072}, ["data_batch_3.bin", "3073-byte records"]),
        ({"data_batch_1.bin": b""}, ["data_batch_1.bin", "0 bytes"]),
        ({"data_batch_2.bin": _records([[10]], [(0, 0, 0)])}, ["data_batch_2.bin", "label 10"]),
    ],
)
def test_malformed_files_raise_config_error(
    tmp_path: Path, files: dict[str, bytes], words: list[str]
) -> None:
    _cifar10_folder(tmp_path, files)
    with pytest.raises(ConfigError) as info:
        load_cifar(tmp_path, train=True)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_missing_folder_and_files_say_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cifar-10-batches-bin.*cifar10\.py") as info:
        load_cifar(tmp_path / "nowhere")
    assert "\n" not in str(info.value)
    folder = _cifar10_folder(tmp_path)
    (folder / "data_batch_4.bin").unlink()
    with pytest.raises(ConfigError, match=r"missing .*data_batch_4\.bin.*3073-byte records"):
        load_cifar(tmp_path, train=True)
    load_cifar(tmp_path, train=False)  # the test split does not need it


def test_bad_arguments(tmp_path: Path) -> None:
    _cifar10_folder(tmp_path)
    with pytest.raises(ConfigError, match="unknown CIFAR variant 'cifar1000'"):
        load_cifar(tmp_path, "cifar1000")
    with pytest.raises(ConfigError, match="coarse labels exist only for cifar100"):
        load_cifar(tmp_path, "cifar10", coarse=True)


def test_real_shared_copy(cifar10_root: Path) -> None:
    train_images, train_labels = load_cifar(cifar10_root, "cifar10", train=True)
    test_images, test_labels = load_cifar(cifar10_root / "cifar-10-batches-bin", train=False)
    assert train_images.shape == (50_000, 3, 32, 32) and test_images.shape == (10_000, 3, 32, 32)
    assert train_labels.bincount().tolist() == [5_000] * 10
    assert test_labels.bincount().tolist() == [1_000] * 10
    # The first record of data_batch_1.bin, read independently of the reader.
    raw = np.fromfile(cifar10_root / "cifar-10-batches-bin" / "data_batch_1.bin", np.uint8, 3073)
    assert train_labels[0] == raw[0]
    assert train_images[0].flatten().tolist() == raw[1:].tolist()
    # The normalisation constants were measured on this copy (exact, from pixel histograms).
    counts = torch.stack([train_images[:, c].flatten().bincount(minlength=256) for c in range(3)])
    values = torch.arange(256, dtype=torch.float64) / 255
    share = counts.double() / counts[0].sum()
    mean = (share * values).sum(1)
    std = ((share * values**2).sum(1) - mean**2).sqrt()
    assert mean.tolist() == pytest.approx(CIFAR10_MEAN, abs=6e-5)
    assert std.tolist() == pytest.approx(CIFAR10_STD, abs=6e-5)
