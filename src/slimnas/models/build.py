"""Build a model by name: a slimnas reference model, a torchvision one (``tv:<name>``), a timm
one (``timm:<name>``, random weights) or any importable factory (``package.module:callable``).

`build_model` passes its keyword arguments as given; `build_configured` decides, from a
``[model]`` section, which of ``num_classes`` and ``width_mult`` a model gets:

- reference models and torchvision's take both (``width_mult`` only when it is not 1);
- timm models take ``num_classes``; a ``width_mult`` other than 1 is refused (timm names carry
  the width, ``mobilenetv3_small_050``);
- a factory gets ``num_classes`` when its signature has that parameter (or ``**kwargs``), and
  ``width_mult`` (when not 1) only if it has that one too, else the setting is refused.

Every failure is a `ConfigError` naming the key at fault (``model.name``, ``model.kwargs``,
``model.width_mult``), so that a run stops before it writes anything.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from torch import nn

from slimnas.config_model import model_source
from slimnas.errors import ConfigError
from slimnas.models import MODELS
from slimnas.models.inputs import input_channels
from slimnas.settings import did_you_mean

IMAGENET_SHAPE = (1, 3, 224, 224)


def build_model(
    name: str, key: str = "model.name", /, **kwargs: Any
) -> tuple[nn.Module, tuple[int, ...]]:
    """The model called ``name``, built with ``kwargs``, and an input shape it takes.

    Args:
        name: ``resnet20`` (a key of `MODELS`), ``tv:resnet18``, ``timm:resnet10t`` or
            ``package.module:callable``.
        key: how the messages name the setting (``model.name``, ``--model``).
        **kwargs: passed to the constructor or factory as they are.

    Returns:
        ``(model, shape)``: the default example shape is 32 px for the CIFAR reference models,
        timm's configured input size, and else 224 px with the first conv's input channels.

    Raises:
        ConfigError: unknown name, missing package, unimportable factory, a constructor that
            raises or returns no ``nn.Module``.
    """
    kind, target = model_source(name, key)
    if kind == "builtin":
        model = _call(MODELS[name], name, key, kwargs)
        small = name not in ("mobilenet_v2", "proxyless_imagenet")
        return model, (1, 3, 32, 32) if small else IMAGENET_SHAPE
    if kind == "tv":
        model = _torchvision_model(target, key, kwargs)
    elif kind == "timm":
        model = _timm_model(target, key, kwargs)
        size = tuple(getattr(model, "pretrained_cfg", {}).get("input_size", IMAGENET_SHAPE[1:]))
        return model, (1, *size)
    else:
        model = _call(import_factory(name, key), name, key, kwargs)
    channels = input_channels(model)
    return model, (1, channels[1] if channels else 3, 224, 224)


def build_configured(model, num_classes: int | None = None) -> nn.Module:
    """The model of a ``[model]`` section (`slimnas.config_model.ModelConfig`): its name,
    ``kwargs``, and ``width_mult`` and ``num_classes`` where the model takes them (module
    docstring). ``num_classes`` None: the model's own default.

    Raises:
        ConfigError: as `build_model`; or ``model.width_mult`` is not 1 for a model without one.
    """
    kind, _ = model_source(model.name)
    kwargs = dict(model.kwargs or {})
    takes = {"num_classes": True, "width_mult": kind != "timm"}
    if kind == "factory":
        factory = import_factory(model.name)
        takes = {arg: _takes(factory, arg) for arg in takes}
    if num_classes is not None and takes["num_classes"]:
        kwargs["num_classes"] = num_classes
    if model.width_mult != 1.0:
        if not takes["width_mult"]:
            where = (
                "timm names carry the width, e.g. mobilenetv3_small_050"
                if kind == "timm"
                else "pass its own width argument in model.kwargs"
            )
            raise ConfigError(
                f"model.width_mult is {model.width_mult} but {model.name} takes no width_mult; "
                f"leave it at 1 ({where})"
            )
        kwargs["width_mult"] = model.width_mult
    return build_model(model.name, **kwargs)[0]


def import_factory(name: str, key: str = "model.name") -> Callable[..., Any]:
    """The callable ``package.module:attr`` names, its module imported like ``python -m``
    does: the working directory is put first on ``sys.path`` (and left there, so that the
    module's own later imports work).

    Raises:
        ConfigError: the module cannot be imported, or has no such callable attribute.
    """
    module_name, _, attribute = name.partition(":")
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and f"{module_name}.".startswith(f"{err.name}."):  # itself
            raise ConfigError(
                f"{key} {name!r}: no module named {err.name!r} in the working directory "
                f"({here}) or the installed packages; run from the folder that holds it or add "
                "that folder to PYTHONPATH"
            ) from None
        raise ConfigError(f"{key} {name!r}: importing {module_name} failed: {err}") from None
    except Exception as err:  # the user's module raised while importing
        raise ConfigError(
            f"{key} {name!r}: importing {module_name} raised {_one_line(err)}"
        ) from None
    factory: Any = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise ConfigError(
                f"{key} {name!r}: module {module_name} ({getattr(module, '__file__', '?')}) has "
                f"no attribute {attribute!r}"
            )
        factory = getattr(factory, part)
    if not callable(factory):
        raise ConfigError(
            f"{key} {name!r}: {attribute} is of type {type(factory).__name__}, not a function or "
            "class that returns the model"
        )
    return factory


def _call(factory: Callable[..., Any], name: str, key: str, kwargs: dict) -> nn.Module:
    """``factory(**kwargs)``, checked to be an ``nn.Module``."""
    try:
        model = factory(**kwargs)
    except Exception as err:  # a user's factory may raise anything
        given = "model.kwargs" if key == "model.name" else "--kwargs"
        raise ConfigError(
            f"{key} {name!r} failed when called with {kwargs or 'no arguments'}: "
            f"{_one_line(err)}; check {given} (num_classes and width_mult are added when taken)"
        ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"{key} {name!r} returned a {type(model).__name__}, not a torch.nn.Module; point it "
            "at a function or class that returns the network"
        )
    return model


def _takes(factory: Callable[..., Any], argument: str) -> bool:
    """Whether ``factory`` accepts the keyword ``argument`` (by name, or through ``**kwargs``;
    True when its signature cannot be read)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(
        p.kind is p.VAR_KEYWORD
        or (p.name == argument and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        for p in parameters
    )


def _torchvision_model(name: str, key: str, kwargs: dict) -> nn.Module:
    try:
        import torchvision
    except ImportError:
        raise ConfigError(
            f"{key} tv:{name} needs torchvision (the 'vision' extra): pip install 'slimnas[vision]'"
        ) from None
    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise ConfigError(
            f"{key}: unknown torchvision model {name!r}{did_you_mean(name, known)}; see "
            "torchvision.models.list_models()"
        )
    return _call(lambda **kw: torchvision.models.get_model(name, **kw), f"tv:{name}", key, kwargs)


def _timm_model(name: str, key: str, kwargs: dict) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ConfigError(
            f"{key} timm:{name} needs timm (the 'timm' extra): pip install 'slimnas[timm]'"
        ) from None
    if not timm.is_model(name):
        known = timm.list_models()
        raise ConfigError(
            f"{key}: unknown timm model {name!r}{did_you_mean(name, known)}; see timm.list_models()"
        )
    if "pretrained" in kwargs or "pretrained_cfg_overlay" in kwargs:
        raise ConfigError(
            "model.kwargs: slimnas creates timm models with random weights (no download); give "
            "trained weights as a .safetensors state dict in model.weights"
        )
    create = timm.create_model
    return _call(lambda **kw: create(name, pretrained=False, **kw), f"timm:{name}", key, kwargs)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "(no message)"
    return f"{type(err).__name__}: {text[:300]}"


__all__ = ["build_model", "build_configured", "import_factory"]
