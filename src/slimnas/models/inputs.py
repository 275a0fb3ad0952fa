"""What input a model takes, and one trial forward on the data's images before a run writes
anything, so that a model that does not fit the data is one line naming both instead of a
traceback from inside the tracer or the first training step."""

from __future__ import annotations

import torch
from torch import nn

from slimnas.errors import ConfigError


class _Found(Exception):
    """Stops the probe forward at the first conv it calls."""


def input_channels(model: nn.Module) -> tuple[str, int] | None:
    """``(module name, in_channels)`` of the first ``Conv2d`` the model's forward calls, found
    by a probe call on a small zero image stopped at that conv; when the forward reaches no
    conv module (it fails first, or convolves functionally), the first ``Conv2d`` in module
    order; None without one."""
    names = {module: name for name, module in model.named_modules()}
    convs = [m for m in names if isinstance(m, nn.Conv2d)]
    if not convs:
        return None
    found: list[nn.Module] = []

    def stop(module: nn.Module, _args) -> None:
        found.append(module)
        raise _Found

    hooks = [conv.register_forward_pre_hook(stop) for conv in convs]
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, convs[0].in_channels, 32, 32))
    except Exception:  # _Found, or a model that fails on the probe: fall back to module order
        pass
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    conv = found[0] if found else convs[0]
    return names[conv], conv.in_channels


def check_input(model: nn.Module, example: torch.Tensor, model_name: str, data_name: str) -> int:
    """Run ``model`` once on ``example`` (one normalised image of the data, eval mode, no
    gradient; the model's mode is restored) and return its number of outputs.

    Args:
        model: the freshly built model.
        example: ``[1, C, H, W]`` as the data loader gives it.
        model_name: ``model.name``, for the messages.
        data_name: what gives the images, e.g. ``data.source 'folder'``.

    Raises:
        ConfigError: naming ``model.name`` and the data, when the input channels differ from
            the data's, the model fixes an input size that is not the data's, the forward fails
            on the image, or it returns something else than logits ``[batch, classes]``.
    """
    channels, size = example.shape[1], "x".join(str(s) for s in example.shape[2:])
    data_says = f"{data_name} gives {channels}-channel {size} images"
    config = getattr(model, "pretrained_cfg", None) or {}  # timm's record of the model
    fixed = tuple(config.get("input_size", ())) if config.get("fixed_input_size") else ()
    if fixed and fixed != tuple(example.shape[1:]):
        raise ConfigError(
            f"model.name {model_name!r} takes only {'x'.join(map(str, fixed))} images but "
            f"{data_says}; set data.image_size to {fixed[-1]} or choose another model"
        )
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            output = model(example)
    except Exception as err:  # a user's model may raise anything on the wrong input
        first = input_channels(model)
        if first is not None and first[1] != channels:
            raise ConfigError(
                f"model.name {model_name!r} takes {first[1]}-channel images (its first conv "
                f"{first[0] or '(the model)'}) but {data_says}; use a model with {channels} "
                f"input channels or data with {first[1]}"
            ) from None
        text = " ".join(str(err).split())[:200]
        raise ConfigError(
            f"model.name {model_name!r} does not run on the data ({data_says}): "
            f"{type(err).__name__}: {text}; set data.image_size to a size the model takes"
        ) from None
    finally:
        model.train(training)
    if not (isinstance(output, torch.Tensor) and output.dim() == 2 and len(output) == len(example)):
        what = (
            f"a tensor of shape {list(output.shape)}"
            if isinstance(output, torch.Tensor)
            else f"a {type(output).__name__}"
        )
        raise ConfigError(
            f"model.name {model_name!r} returns {what}, not logits [batch, classes]; slimnas "
            "trains classifiers whose forward returns one tensor of class scores"
        )
    return output.shape[1]


__all__ = ["check_input", "input_channels"]
