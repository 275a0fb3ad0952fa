"""Tests for ImageFolder loading and its decoded cache (data/folder.py), on real PNG/JPEG files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from slimnas.data import load_image_folder
from slimnas.errors import ConfigError

Image = pytest.importorskip("PIL.Image", reason="ImageFolder decoding needs Pillow")


def _write_tree(root: Path) -> dict[str, np.ndarray]:
    """Two classes, PNG (lossless, so pixels can be compared) and one JPEG; returns the PNGs."""
    rng = np.random.default_rng(0)
    written = {}
    for name, count in (("cat", 3), ("dog", 2)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
            written[f"{name}/{i}.png"] = pixels
    Image.fromarray(np.full((12, 16, 3), 200, np.uint8)).save(root / "dog" / "wide.JPG")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return written


def test_tree_is_read_sorted_with_labels(tmp_path: Path) -> None:
    written = _write_tree(tmp_path / "tree")
    images, labels, classes = load_image_folder(tmp_path / "tree", 8)
    assert classes == ["cat", "dog"]
    assert images.shape == (6, 3, 8, 8) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 0, 1, 1, 1] and labels.dtype == torch.int64
    order = ["cat/0.png", "cat/1.png", "cat/2.png", "dog/0.png", "dog/1.png"]
    for i, key in enumerate(order):  # same size: no resampling, exact pixels, HWC → CHW
        assert images[i].permute(1, 2, 0).numpy().tolist() == written[key].tolist()
    # The 16 × 12 JPEG: shorter side stays 8 after resizing to 8 → 11 × 8, centre crop.
    assert abs(images[5].float().mean().item() - 200) < 3


def test_resize_then_centre_crop(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, 8:32] = 255  # a white centre band, wider than the crops (resampling blurs edges)
    Image.fromarray(pixels).save(tmp_path / "a" / "x.png")
    images, _, _ = load_image_folder(tmp_path, 10)
    assert images.shape == (1, 3, 10, 10)
    assert (images[0] >= 250).all()  # 40 × 20 → 20 × 10; the centre 10 × 10 lies in the band
    images, _, _ = load_image_folder(tmp_path, 4, resize=8)
    assert images.shape == (1, 3, 4, 4) and (images[0] >= 250).all()


def test_cache_round_trip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_tree(tmp_path / "tree")
    cache = tmp_path / "cache"
    first = load_image_folder(tmp_path / "tree", 8, cache_dir=cache)
    files = list(cache.glob("imagefolder-*.npz"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))
    with np.load(files[0], allow_pickle=False) as data:
        assert data["images"].dtype == np.uint8 and data["images"].shape == (6, 3, 8, 8)
    with caplog.at_level(logging.INFO, logger="slimnas.data.folder"):
        second = load_image_folder(tmp_path / "tree", 8, cache_dir=cache)
    assert "from cache" in caplog.text
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[2] == second[2]
    load_image_folder(tmp_path / "tree", 4, cache_dir=cache)  # another size: another key
    assert len(list(cache.glob("imagefolder-*.npz"))) == 2
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "tree" / "cat" / "3.png")
    third = load_image_folder(tmp_path / "tree", 8, cache_dir=cache)  # a new file: new key
    assert len(third[1]) == 7


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    _write_tree(tmp_path / "tree")
    cache = tmp_path / "cache"
    first = load_image_folder(tmp_path / "tree", 8, cache_dir=cache)
    (path,) = cache.glob("imagefolder-*.npz")
    path.write_bytes(path.read_bytes()[:100])
    again = load_image_folder(tmp_path / "tree", 8, cache_dir=cache)
    assert torch.equal(first[0], again[0])
    with np.load(path, allow_pickle=False) as data:  # rewritten whole
        assert data["images"].shape == (6, 3, 8, 8)


def test_bad_folders_raise_one_line(tmp_path: Path) -> None:
    cases = []
    cases.append((tmp_path / "missing", "does not exist"))
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "flat" / "x.png")
    cases.append((tmp_path / "flat", "no class folders"))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "a" / "readme.txt").write_text("hi")
    cases.append((tmp_path / "empty", "holds no images"))
    (tmp_path / "broken" / "a").mkdir(parents=True)
    (tmp_path / "broken" / "a" / "bad.png").write_bytes(b"\x89PNG not really")
    cases.append((tmp_path / "broken", "cannot decode image .*bad.png"))
    for root, match in cases:
        with pytest.raises(ConfigError, match=match) as info:
            load_image_folder(root, 4)
        assert "\n" not in str(info.value)


def test_truncated_image_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((32, 32, 3), 9, np.uint8)).save(tmp_path / "a" / "x.jpg")
    data = (tmp_path / "a" / "x.jpg").read_bytes()
    (tmp_path / "a" / "x.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="x.jpg"):
        load_image_folder(tmp_path, 8)
