"""Tests for batch augmentation (data/augment.py): crop and flip against a per-image reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from slimnas.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    crop_flip,
    draw_crop_flip,
    normalize,
    random_crop_flip,
)


def _batch(n: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=generator, dtype=torch.uint8)


def _reference(batch: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int):
    """The textbook per-image version: pad, slice, flip."""
    padded = F.pad(batch, (padding,) * 4)
    out = []
    for image, (top, left), flip in zip(padded, offsets.tolist(), flips.tolist()):
        crop = image[:, top : top + batch.shape[2], left : left + batch.shape[3]]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


def test_zero_shift_without_flip_is_identity() -> None:
    batch = _batch()
    offsets = torch.full((len(batch), 2), 4)
    flips = torch.zeros(len(batch), dtype=torch.bool)
    out = crop_flip(batch, offsets, flips, padding=4)
    assert torch.equal(out, batch)


@pytest.mark.parametrize("padding", [0, 2, 4])
def test_matches_per_image_reference(padding: int) -> None:
    batch = _batch(64)
    offsets, flips = draw_crop_flip(len(batch), padding, torch.Generator().manual_seed(1))
    out = crop_flip(batch, offsets, flips, padding)
    assert out.dtype == torch.uint8 and out.shape == batch.shape
    assert torch.equal(out, _reference(batch, offsets, flips, padding))


def test_flip_only_and_shift_only() -> None:
    batch = _batch(4)
    centre = torch.full((4, 2), 4)
    flipped = crop_flip(batch, centre, torch.ones(4, dtype=torch.bool))
    assert torch.equal(flipped, batch.flip(-1))
    shifted = crop_flip(batch, torch.tensor([[5, 4]] * 4), torch.zeros(4, dtype=torch.bool))
    assert torch.equal(shifted[:, :, :-1], batch[:, :, 1:])  # one row down in the padded image
    assert (shifted[:, :, -1] == 0).all()  # the zero border comes in


def test_random_crops_and_flips_really_happen() -> None:
    batch = _batch(512)
    generator = torch.Generator().manual_seed(0)
    offsets, flips = draw_crop_flip(512, 4, generator)
    assert 0.4 < flips.float().mean() < 0.6
    assert offsets.min() == 0 and offsets.max() == 8
    assert len(torch.unique(offsets, dim=0)) == 81  # all 9 × 9 crops occur
    out = random_crop_flip(batch, 4, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out.dtype == torch.uint8
    changed = (out != batch).flatten(1).any(1)
    assert changed.float().mean() > 0.9  # only centre crops without flip stay put
    again = random_crop_flip(batch, 4, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_normalize_is_float32_standardised() -> None:
    batch = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 2, 2)
    out = normalize(batch, CIFAR10_MEAN, CIFAR10_STD)
    assert out.dtype == torch.float32 and out.shape == batch.shape
    mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(3, 1, 1)
    assert torch.allclose(out[0], (0 - mean) / std)
    assert torch.allclose(out[1], (1 - mean) / std)
    floats = torch.rand(2, 3, 4, 4)
    kept = floats.clone()
    normalize(floats, (0.5,) * 3, (0.5,) * 3)
    assert torch.equal(floats, kept)  # never in place on the input


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    batch = _batch(64)
    cpu = random_crop_flip(batch, 4, torch.Generator().manual_seed(3))
    gpu = random_crop_flip(batch.cuda(), 4, torch.Generator().manual_seed(3))
    assert torch.equal(gpu.cpu(), cpu)
