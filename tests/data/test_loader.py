"""Tests for `BatchLoader` (data/loader.py): determinism, exact resume, DDP sharding."""

from __future__ import annotations

import json

import pytest
import torch

from slimnas.data import CIFAR10_MEAN, CIFAR10_STD, BatchLoader
from slimnas.errors import CheckpointError, ConfigError


def _data(n: int = 103) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 8, 8), generator=generator, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)  # mark each image (n < 256)
    return images, torch.arange(n) % 10


def _batches(loader: BatchLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def _assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def _loader(**kwargs) -> BatchLoader:
    images, labels = _data()
    settings = dict(shuffle=True, seed=7, augment=True, padding=2)
    settings.update(kwargs)
    batch_size = settings.pop("batch_size", 16)
    return BatchLoader(images, labels, batch_size, **settings)


def test_same_seed_same_batches_and_epochs_differ() -> None:
    first, second = _loader(), _loader()
    epoch0 = _batches(first)
    _assert_same(epoch0, _batches(second))
    assert first.epoch == 1 and first.position == 0
    epoch1 = _batches(first)
    assert not torch.equal(epoch0[0][1], epoch1[0][1])  # a new order
    other_seed = _batches(_loader(seed=8))
    assert not torch.equal(epoch0[0][1], other_seed[0][1])


def test_epoch_covers_every_example_once() -> None:
    loader = _loader(augment=False)
    labels = torch.cat([y for _, y in loader])
    images, all_labels = _data()
    assert len(loader) == 7 and len(labels) == 103
    assert sorted(labels.tolist()) == sorted(all_labels.tolist())
    ordered = _loader(augment=False, shuffle=False)
    first_images, first_labels = next(iter(ordered))
    assert torch.equal(first_images, images[:16]) and torch.equal(first_labels, all_labels[:16])


def test_drop_last_and_len() -> None:
    loader = _loader(drop_last=True)
    batches = _batches(loader)
    assert len(loader) == len(batches) == 6
    assert all(len(y) == 16 for _, y in batches)
    assert len(_loader(batch_size=103)) == 1


def test_epoch_order_is_a_pure_function_of_seed_and_epoch() -> None:
    loader = _loader()
    _batches(loader)
    _batches(loader)
    fresh = _loader()
    fresh.set_epoch(2)
    _assert_same(_batches(loader), _batches(fresh))
    assert torch.equal(loader.epoch_order(5), fresh.epoch_order(5))


@pytest.mark.parametrize("stop", [1, 3, 6])
def test_resume_mid_epoch_is_exact(stop: int) -> None:
    reference = _loader(mean=CIFAR10_MEAN, std=CIFAR10_STD)
    _batches(reference)  # epoch 0
    expected = _batches(reference) + _batches(reference)  # epochs 1 and 2

    interrupted = _loader(mean=CIFAR10_MEAN, std=CIFAR10_STD)
    _batches(interrupted)
    seen = []
    for batch in interrupted:
        seen.append(batch)
        if len(seen) == stop:
            state = json.loads(json.dumps(interrupted.state_dict()))  # survives JSON
            break
    assert state["epoch"] == 1 and state["position"] == stop

    resumed = _loader(mean=CIFAR10_MEAN, std=CIFAR10_STD)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # a trainer's usual call keeps the position within the same epoch
    rest = _batches(resumed) + _batches(resumed)
    _assert_same(seen + rest, expected)
    assert resumed.state_dict()["epoch"] == 3


def test_state_at_epoch_end_resumes_in_next_epoch() -> None:
    loader = _loader()
    batches = list(loader)  # exhausts epoch 0
    assert loader.state_dict()["epoch"] == 1
    resumed = _loader()
    resumed.load_state_dict(loader.state_dict())
    _assert_same(_batches(resumed), _batches(loader))
    assert len(batches) == 7


@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_split_the_global_batch_exactly(drop_last: bool) -> None:
    single = _batches(_loader(batch_size=16, drop_last=drop_last))
    ranks = [
        _batches(_loader(batch_size=8, rank=r, world_size=2, drop_last=drop_last)) for r in range(2)
    ]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for (x, y), (x0, y0), (x1, y1) in zip(single, *ranks):
        assert torch.equal(torch.cat([x0, x1]), x)  # augmentation included
        assert torch.equal(torch.cat([y0, y1]), y)
        assert abs(len(y0) - len(y1)) <= 1


def test_resume_under_another_world_size() -> None:
    single = _loader(batch_size=16)
    iterator = iter(single)
    next(iterator)
    next(iterator)
    state = single.state_dict()
    expected = list(iterator)
    halves = []
    for rank in range(2):
        loader = _loader(batch_size=8, rank=rank, world_size=2)
        loader.load_state_dict(state)
        halves.append(_batches(loader))
    for (x, _), (x0, _), (x1, _) in zip(expected, *halves):
        assert torch.equal(torch.cat([x0, x1]), x)


def test_uint8_batches_without_normalisation() -> None:
    x, y = next(iter(_loader()))
    assert x.dtype == torch.uint8 and x.shape == (16, 3, 8, 8) and y.dtype == torch.int64
    x, _ = next(iter(_loader(mean=CIFAR10_MEAN, std=CIFAR10_STD)))
    assert x.dtype == torch.float32


def test_mismatched_state_is_refused() -> None:
    state = _loader().state_dict()
    with pytest.raises(CheckpointError, match="seed 7 \\(now 8\\)"):
        _loader(seed=8).load_state_dict(state)
    with pytest.raises(CheckpointError, match="global_batch_size"):
        _loader(batch_size=32).load_state_dict(state)
    with pytest.raises(CheckpointError, match="lacks position"):
        _loader().load_state_dict({"epoch": 0})


def test_bad_settings_raise_config_error() -> None:
    images, labels = _data()
    with pytest.raises(ConfigError, match="rank 2"):
        BatchLoader(images, labels, 8, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="batch_size"):
        BatchLoader(images, labels, 0)
    with pytest.raises(ConfigError, match="both mean and std"):
        BatchLoader(images, labels, 8, mean=CIFAR10_MEAN)
    with pytest.raises(ConfigError, match="uint8"):
        BatchLoader(images.float(), labels, 8)
    with pytest.raises(ConfigError, match="one per image"):
        BatchLoader(images, labels[:-1], 8)
