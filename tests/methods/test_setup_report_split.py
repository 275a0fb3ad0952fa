"""Tests for methods/setup.py's report split: found archs are reported on held-out images that
no search scored."""

from __future__ import annotations

import torch

from slimnas.config import DataConfig, SupernetConfig
from slimnas.data.prepare import load_training_data
from slimnas.methods.setup import Setup


def _images(batches) -> torch.Tensor:
    return torch.cat([images for images, _ in batches])


def test_report_images_follow_the_scored_ones_and_never_overlap():
    data = load_training_data(DataConfig(heldout=0.1, max_train_images=1000))
    held = len(data.heldout[1])  # 100
    setup = Setup(data, SupernetConfig(), score_images=60, score_batch=25, report_images=1000)
    search, report = _images(setup.heldout_batches()), _images(setup.report_batches())
    assert len(search) == 60 and len(report) == held - 60  # what is left, at most report_images
    # Disjoint: no report image is one the searches score on.
    flat_search = {tuple(x.flatten()[:64].tolist()) for x in search}
    assert not any(tuple(x.flatten()[:64].tolist()) in flat_search for x in report)
    capped = Setup(data, SupernetConfig(), score_images=60, report_images=15)
    assert len(_images(capped.report_batches())) == 15


def test_no_report_split_when_the_search_takes_every_held_out_image():
    data = load_training_data(DataConfig(heldout=0.1, max_train_images=1000))
    assert Setup(data, SupernetConfig(), score_images=100, report_images=50).report_batches() == []
    assert Setup(data, SupernetConfig(), score_images=10, report_images=0).report_batches() == []
