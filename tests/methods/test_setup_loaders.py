"""A method fitted and searched on the user's own ``DataLoader``s (`TrainingData.from_loaders`)
finds what it finds on the same images as in-memory splits: same weights, same archs, same
scores."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from slimnas.config import SupernetConfig
from slimnas.data import BatchLoader, normalize
from slimnas.data.prepare import TrainingData
from slimnas.errors import ConfigError
from slimnas.methods.autoslim import AutoSlim
from slimnas.methods.setup import Setup
from slimnas.methods.tas import TAS
from tests.helpers.search import tiny_data, tiny_supernet


class BatchLoaderOrder(Sampler):
    """The order `BatchLoader` shuffles ``count`` examples in at each epoch (``set_epoch``)."""

    def __init__(self, count: int, seed: int) -> None:
        self.order = BatchLoader(
            torch.zeros(count, 1, 1, 1, dtype=torch.uint8),
            torch.zeros(count, dtype=torch.long),
            1,
            seed=seed,
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(self.order.epoch_order(self.epoch).tolist())

    def __len__(self) -> int:
        return len(self.order.labels)


def loaders_of(data: TrainingData, batch: int, seed: int) -> TrainingData:
    """``data``'s splits as DataLoaders with 2 workers (training: BatchLoader's order)."""

    def dataset(split):
        return TensorDataset(normalize(split[0], data.mean, data.std), split[1])

    count = len(data.train[1])
    train = DataLoader(
        dataset(data.train),
        batch,
        sampler=BatchLoaderOrder(count, seed),
        drop_last=True,
        num_workers=2,
    )
    heldout = DataLoader(dataset(data.heldout), 16)
    return TrainingData.from_loaders(train, heldout, num_classes=data.num_classes)


def setup_of(data: TrainingData, score_images: int) -> Setup:
    recipe = SupernetConfig(epochs=1, batch_size=32, warmup_epochs=0.0)
    return Setup(
        data, recipe, score_images=score_images, score_batch=16, augment=False, progress=False
    )


def two_widths(supernet):
    space = supernet.space
    for unit in space.channel_units():
        space = space.with_choices(unit.name, [unit.max_channels // 2, unit.max_channels])
    return type(supernet)(supernet.model, space)


def test_autoslim_on_dataloaders_equals_autoslim_on_tensors() -> None:
    torch.set_num_threads(1)
    data = tiny_data(train=64, heldout=24)
    found = []
    for source in (data, loaders_of(data, 32, seed=0)):
        setup = setup_of(source, score_images=20)
        supernet = two_widths(tiny_supernet())
        method = AutoSlim().fit(supernet, setup)
        results = method.search(["macs<=60%"])
        weights = {k: v.clone() for k, v in supernet.model.state_dict().items()}
        found.append((results, weights))
    (ours, our_weights), (theirs, their_weights) = found
    for name in our_weights:
        assert torch.equal(our_weights[name], their_weights[name]), name
    assert [r.arch for r in ours] == [r.arch for r in theirs]
    assert [r.accuracy for r in ours] == [r.accuracy for r in theirs]


def test_tas_refuses_data_loaders() -> None:
    data = loaders_of(tiny_data(train=64, heldout=16), 32, seed=0)
    with pytest.raises(ConfigError, match="TAS trains weights and architecture on two halves"):
        TAS().fit(tiny_supernet(), setup_of(data, score_images=16)).search(["macs<=50%"])
