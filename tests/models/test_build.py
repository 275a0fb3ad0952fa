"""`build_configured` passes each model only what it takes; `build_checked` resolves the class
count from a factory's outputs; `input_channels` follows the forward, not declaration order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from slimnas.config import Config, apply_overrides
from slimnas.configured_model import build_checked
from slimnas.errors import ConfigError
from slimnas.models.build import build_configured
from slimnas.models.inputs import input_channels

FACTORY = "tests.helpers.models"


@pytest.fixture(autouse=True)
def _from_repository_root(monkeypatch, request) -> None:
    monkeypatch.chdir(request.config.rootpath)


def _config(**model) -> Config:
    return Config.from_dict({"model": model})


def test_kwargs_from_set_reach_the_factory_with_num_classes() -> None:
    tables = apply_overrides({}, [f"model.name={FACTORY}:make_net", "model.kwargs={width = 8}"])
    model = build_configured(Config.from_dict(tables).model, num_classes=7)
    assert model.head.out_features == 7 and model.stem[0].out_channels == 8


def test_a_factory_without_num_classes_sets_the_class_count() -> None:
    config = _config(name=f"{FACTORY}:make_net_ten_classes")
    data = SimpleNamespace(num_classes=4)
    resolved, model = build_checked(config, data, torch.randn(1, 3, 16, 16), seed=0)
    assert resolved.model.num_classes == 10 and model.head.out_features == 10
    with pytest.raises(ConfigError, match="width_mult"):
        build_configured(_config(name=f"{FACTORY}:make_net_ten_classes", width_mult=0.5).model)


class HeadFirst(nn.Module):
    """Declares an 8-channel conv first but calls the 1-channel one first."""

    def __init__(self):
        super().__init__()
        self.later = nn.Conv2d(8, 8, 3)
        self.first = nn.Conv2d(1, 8, 3)

    def forward(self, x):
        return self.later(self.first(x))


def test_input_channels_come_from_the_first_conv_called() -> None:
    model = HeadFirst().train()
    assert input_channels(model) == ("first", 1)
    assert model.training  # the probe restores the mode
