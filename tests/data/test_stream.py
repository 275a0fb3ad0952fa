"""Tests for `StreamingLoader` (data/stream.py) and `ImageFiles` (data/image_files.py): batches
independent of the number of workers, exact resume, DDP shards, the same evaluation pixels as
the in-memory decoder, ImageNet's training crops, and corrupt files as one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from slimnas.data import BatchLoader, load_image_folder
from slimnas.data.image_files import ImageFiles, eval_resize, open_image_folder
from slimnas.data.stream import StreamingLoader, decode_augmented, random_resized_box
from slimnas.errors import CheckpointError, ConfigError
from tests.helpers.image_folder import GRAY_CLASS, add_corrupt_file, make_image_folder

SIZE = 16
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"), classes=3, per_class=8)


def stream(folder: Path, workers: int = 0, **options) -> StreamingLoader:
    files, labels, _ = open_image_folder(folder / "train", SIZE, workers=workers)
    settings = dict(seed=3, augment=True, mean=MEAN, std=STD)
    settings.update(options)
    batch = settings.pop("batch_size", 5)
    return StreamingLoader(files, labels, batch, **settings)


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_batches_are_the_same_for_any_number_of_workers_and_after_resume(folder) -> None:
    none, two = stream(folder, workers=0), stream(folder, workers=2)
    first = [list(none), list(none)]
    assert len(first[0]) == len(none) == 5 and first[0][0][0].dtype == torch.float32
    assert_same(first[0], list(two))
    assert_same(first[1], list(two))
    assert not torch.equal(first[0][0][0], first[1][0][0])  # another epoch: other crops
    # Stopped after two batches of the second epoch, resumed by a new loader.
    stopped = stream(folder)
    list(stopped)
    batches = iter(stopped)
    next(batches), next(batches)
    resumed = stream(folder, workers=2)
    resumed.load_state_dict(stopped.state_dict())
    assert_same(list(resumed), first[1][2:])
    with pytest.raises(CheckpointError, match="in-memory loader"):
        resumed.load_state_dict(
            BatchLoader(*load_image_folder(folder / "train", SIZE)[:2], 5).state_dict()
        )


def test_evaluation_batches_equal_the_in_memory_path(folder) -> None:
    images, labels, classes = load_image_folder(folder / "train", SIZE)
    files, file_labels, file_classes = open_image_folder(folder / "train", SIZE, resize=SIZE)
    assert file_classes == classes and torch.equal(file_labels, labels)
    assert files.shape == tuple(images.shape) and torch.equal(files.decode(), images)
    memory = BatchLoader(images, labels, 6, shuffle=False, mean=MEAN, std=STD)
    streamed = StreamingLoader(files, labels, 6, shuffle=False, mean=MEAN, std=STD)
    assert_same(list(memory), list(streamed))
    gray = images[labels == classes.index(GRAY_CLASS)]  # grayscale files: 3 equal channels
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    # Without augmentation a shuffled stream is the in-memory loader without augmentation.
    memory = BatchLoader(images, labels, 6, seed=4, drop_last=True, mean=MEAN, std=STD)
    streamed = StreamingLoader(files, labels, 6, seed=4, drop_last=True, mean=MEAN, std=STD)
    assert_same(list(memory), list(streamed))


def test_image_files_subsets_stay_on_disk(folder) -> None:
    files, labels, _ = open_image_folder(folder / "train", SIZE)
    assert files.resize == eval_resize(SIZE) == 18 and len(files) == 24
    pick = torch.tensor([3, 0, 7])
    subset = files[pick]
    assert isinstance(subset, ImageFiles) and list(subset.paths) == [files.paths[i] for i in pick]
    assert len(files[:5]) == 5 and files[2].shape == (3, SIZE, SIZE)
    assert torch.equal(subset.decode()[1], files[0])


def test_ddp_shards_concatenate_to_the_global_batch(folder) -> None:
    whole = list(stream(folder, batch_size=6, drop_last=True))
    shards = [
        list(stream(folder, batch_size=3, drop_last=True, rank=r, world_size=2)) for r in (0, 1)
    ]
    for k, (images, labels) in enumerate(whole):
        assert torch.equal(torch.cat([shards[0][k][0], shards[1][k][0]]), images)
        assert torch.equal(torch.cat([shards[0][k][1], shards[1][k][1]]), labels)


def test_random_resized_crops_and_flips() -> None:
    rng = np.random.default_rng(0)
    for width, height in ((50, 30), (30, 50), (7, 7), (400, 20)):
        for _ in range(200):
            left, top, right, bottom = random_resized_box(width, height, rng)
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
            area = (right - left) * (bottom - top) / (width * height)
            ratio = (right - left) / (bottom - top)
            if (width, height) != (400, 20):  # a 20:1 image always falls back to a centre crop
                assert 0.04 <= area <= 1.0 and 0.6 <= ratio <= 1.6


def test_training_decode_depends_only_on_its_seed(tmp_path) -> None:
    path = tmp_path / "ramp.png"
    ramp = np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (48, 1, 3))
    Image.fromarray(ramp).save(path)
    crops = [decode_augmented(str(path), 16, 3, seed) for seed in range(20)]
    assert all(c.shape == (3, 16, 16) and c.dtype == np.uint8 for c in crops)
    assert np.array_equal(crops[0], decode_augmented(str(path), 16, 3, 0))
    assert len({c.tobytes() for c in crops}) == 20
    rising = [bool(c[0, 0, -1] > c[0, 0, 0]) for c in crops]  # the ramp falls when flipped
    assert 3 <= sum(rising) <= 17
    gray = decode_augmented(str(path), 16, 1, 0)
    assert gray.shape == (1, 16, 16)


def test_corrupt_files_are_one_line_errors_naming_them(tmp_path) -> None:
    root = make_image_folder(tmp_path / "bad", classes=2, per_class=3)
    bad = add_corrupt_file(root)
    with pytest.raises(ConfigError, match=f"cannot read image {bad}") as info:
        open_image_folder(root / "train", SIZE)
    assert "\n" not in str(info.value)
    # A file whose header reads but whose pixels do not: at the batch that holds it.
    bad.unlink()
    good = sorted((root / "train" / "c0").iterdir())[0]
    data = good.read_bytes()
    good.write_bytes(data[: len(data) * 2 // 3])  # the PNG header is intact, the pixels cut
    for workers in (0, 2):
        loader = stream(root, workers=workers, batch_size=7)
        with pytest.raises(ConfigError, match="cannot decode image .*0000.png") as info:
            list(loader)
        assert "\n" not in str(info.value)
