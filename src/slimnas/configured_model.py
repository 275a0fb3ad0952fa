"""The model a config names, checked against its data before a command writes anything.

`slimnas train`, `slimnas run` and `slimnas latency-table` share these two steps:

    data = load_training_data(config.data, channels=image_channels(config))
    config, model = build_checked(config, data, example, seed)

`image_channels` decodes image folders as grayscale for a model whose first conv takes one
channel (RGB otherwise); `build_checked` resolves ``model.num_classes``, builds the model and
runs it once on one image of the data (`slimnas.models.inputs.check_input`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from slimnas.errors import ConfigError
from slimnas.models.build import build_configured
from slimnas.models.inputs import check_input, input_channels


def image_channels(config: Any) -> int:
    """1 when ``data.source`` is an image folder and the model takes one-channel images (its
    first conv's ``in_channels``), else 3 (folders are decoded as RGB)."""
    if config.data.source != "folder":
        return 3
    first = input_channels(build_configured(config.model, config.model.num_classes))
    return 1 if first is not None and first[1] == 1 else 3


def build_checked(
    config: Any, data: Any, example: torch.Tensor, seed: int
) -> tuple[Any, nn.Module]:
    """``(config, model)``: ``config`` with ``model.num_classes`` resolved (the data's class
    count unless set, or what a model that takes no ``num_classes`` outputs), and the model,
    its initial weights drawn with ``seed``, checked to run on ``example``.

    Args:
        config: a `Config` or `PipelineConfig`.
        data: the loaded `TrainingData` (its ``num_classes``).
        example: one normalised training image, ``[1, C, H, W]``.
        seed: seeds the initial weights.

    Raises:
        ConfigError: one line naming ``model.name`` (or ``model.num_classes``) and the data.
    """
    from slimnas.run_dir import build_model_of

    requested = config.model.num_classes
    num_classes = requested or data.num_classes
    if num_classes < data.num_classes:
        raise ConfigError(
            f"model.num_classes is {num_classes} but the data has {data.num_classes} "
            "classes; raise it or leave it out"
        )
    config = replace(config, model=replace(config.model, num_classes=num_classes))
    model = build_model_of(config, seed)
    name = config.model.name
    outputs = check_input(model, example, name, f"data.source {config.data.source!r}")
    if outputs != num_classes:  # a factory without num_classes, or one that ignores it
        if requested is not None:
            raise ConfigError(
                f"model.num_classes is {requested} but model.name {name!r} outputs {outputs} "
                "classes (it takes no num_classes argument); leave model.num_classes out"
            )
        if outputs < data.num_classes:
            raise ConfigError(
                f"model.name {name!r} outputs {outputs} classes but the data has "
                f"{data.num_classes}; give the model its class count (num_classes, or its own "
                "argument in model.kwargs)"
            )
        config = replace(config, model=replace(config.model, num_classes=outputs))
    return config, model


__all__ = ["build_checked", "image_channels"]
