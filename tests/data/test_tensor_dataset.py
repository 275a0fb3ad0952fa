"""Tests for `ImageTensorDataset` (data/tensor_dataset.py)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from slimnas.data import ImageTensorDataset
from slimnas.errors import ConfigError


def test_items_transform_and_dataloader() -> None:
    images = torch.arange(4 * 3 * 2 * 2, dtype=torch.uint8).view(4, 3, 2, 2)
    labels = torch.tensor([3, 1, 0, 2], dtype=torch.int32)
    dataset = ImageTensorDataset(images, labels, transform=lambda image: image.flip(-1))
    assert len(dataset) == 4 and dataset.num_classes == 4
    image, label = dataset[1]
    assert torch.equal(image, images[1].flip(-1)) and label.item() == 1
    assert label.dtype == torch.int64
    x, y = next(iter(DataLoader(dataset, batch_size=4)))
    assert x.shape == (4, 3, 2, 2) and y.tolist() == [3, 1, 0, 2]


def test_bad_tensors() -> None:
    with pytest.raises(ConfigError, match="uint8"):
        ImageTensorDataset(torch.zeros(2, 3, 2, 2), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ConfigError, match="one per image"):
        ImageTensorDataset(torch.zeros(2, 3, 2, 2, dtype=torch.uint8), torch.zeros(3))
