"""Tests for `class_balanced_split` (data/split.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slimnas.data import class_balanced_split
from slimnas.errors import ConfigError

# 3 classes of unequal size: 40, 30 and 20 examples, interleaved.
LABELS = torch.tensor([0] * 40 + [1] * 30 + [2] * 20)[
    torch.randperm(90, generator=torch.Generator().manual_seed(0))
]


def _check_partition(train: torch.Tensor, held: torch.Tensor, n: int) -> None:
    assert train.dtype == held.dtype == torch.int64
    assert torch.equal(torch.sort(torch.cat([train, held])).values, torch.arange(n))
    assert torch.equal(train, train.sort().values) and torch.equal(held, held.sort().values)


def test_share_per_class() -> None:
    train, held = class_balanced_split(LABELS, 0.1, seed=0)
    _check_partition(train, held, 90)
    assert LABELS[held].bincount().tolist() == [4, 3, 2]
    assert LABELS[train].bincount().tolist() == [36, 27, 18]


def test_count_per_class() -> None:
    train, held = class_balanced_split(LABELS, 5, seed=0)
    _check_partition(train, held, 90)
    assert LABELS[held].bincount().tolist() == [5, 5, 5]


def test_seeded_and_deterministic() -> None:
    a = class_balanced_split(LABELS, 0.25, seed=3)
    b = class_balanced_split(LABELS.numpy(), 0.25, seed=3)  # numpy labels give the same split
    c = class_balanced_split(LABELS.tolist(), 0.25, seed=4)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    assert not torch.equal(a[1], c[1])


def test_edge_amounts() -> None:
    train, held = class_balanced_split(LABELS, 0.0, seed=0)
    assert len(held) == 0 and len(train) == 90
    train, held = class_balanced_split(LABELS, 1.0, seed=0)
    assert len(train) == 0 and len(held) == 90
    train, held = class_balanced_split(np.array([], dtype=np.int64), 3, seed=0)
    assert len(train) == len(held) == 0


@pytest.mark.parametrize(
    ("heldout", "match"),
    [(21, "class 2 has 20 examples"), (1.5, "outside"), (-1, "negative"), (True, "share")],
)
def test_bad_amounts(heldout: float, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        class_balanced_split(LABELS, heldout, seed=0)


def test_float_labels_are_refused() -> None:
    with pytest.raises(ConfigError, match="integers"):
        class_balanced_split(LABELS.float(), 0.1)
